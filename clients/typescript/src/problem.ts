// presignd answers every refusal as an RFC 9457 problem document; this is it as an Error.

import type { components } from './schema.js';

export type Problem = components['schemas']['Problem'];
export type KnownProblemCode = components['schemas']['KnownProblemCode'];

/**
 * A refusal from presignd (any non-2xx answer). `code` is the stable machine-readable cause:
 * switch on it, but keep a default branch, as presignd may add codes (treat an unknown one by
 * its `status`). An answer that is not a problem document (a proxy's error page, say) becomes a
 * problem with code `unexpected_response`.
 */
export class PresigndProblem extends Error {
  readonly status: number;
  readonly code: KnownProblemCode | (string & {});
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  /** The request id (also the `x-request-id` header): quote it when asking an operator. */
  readonly requestId: string | undefined;
  /** Seconds to wait before trying again (`rate_limited`, or a `Retry-After` header). */
  readonly retryAfter: number | undefined;
  readonly problem: Problem;

  constructor(problem: Problem, retryAfter?: number) {
    super(`presignd ${problem.status} ${problem.code}: ${problem.detail}`);
    this.name = 'PresigndProblem';
    this.problem = problem;
    this.status = problem.status;
    this.code = problem.code;
    this.title = problem.title;
    this.detail = problem.detail;
    this.type = problem.type;
    this.requestId = problem.request_id;
    this.retryAfter = problem.retry_after ?? retryAfter;
  }
}

export function isProblem(value: unknown): value is Problem {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.status === 'number' && typeof v.code === 'string'
    && typeof v.title === 'string' && typeof v.detail === 'string' && typeof v.type === 'string';
}

/** A problem for an answer that carried none. */
export function unexpected(status: number, statusText: string, body: string, requestId?: string): Problem {
  return {
    type: 'about:blank',
    title: statusText || `HTTP ${status}`,
    status,
    detail: body.slice(0, 300) || `HTTP ${status} without a problem document`,
    code: 'unexpected_response',
    ...(requestId ? { request_id: requestId } : {}),
  };
}
