// The presignd HTTP API as methods: one fetch per call, problem documents thrown as
// PresigndProblem, Retry-After honoured on 429 and 503. No runtime dependency beyond `fetch`.

import { PresigndProblem, isProblem, unexpected } from './problem.js';
import { RETRYABLE, type RetryOptions, retryAfterMs, sleep } from './retry.js';
import type {
  AccessPointList,
  BatchItem,
  BatchResponse,
  CompletedPart,
  CompleteResponse,
  CreateUploadRequest,
  CreateUploadResponse,
  ListPartsResponse,
  PartsResponse,
  PresignRequest,
  PresignResponse,
  UploadedPart,
  Verification,
  VerifyRequest,
  WhoAmI,
} from './types.js';

/** A bearer token, or a function returning the current one (called before every request, so a refreshed token is picked up mid-upload). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** presignd's base URL, e.g. `https://presignd.example.com`. */
  baseUrl: string;
  token: TokenSource;
  /** Retrying 429 and 503 answers (see RetryOptions). */
  retry?: RetryOptions;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  signal?: AbortSignal;
}

/** What presignd answered, with its `x-request-id`. */
export interface Answer<T> {
  body: T;
  requestId: string | null;
}

const path = (s: string) => encodeURIComponent(s);

export class PresigndClient {
  readonly #base: string;
  readonly #token: TokenSource;
  readonly #retry: Required<Omit<RetryOptions, 'onRetry'>> & Pick<RetryOptions, 'onRetry'>;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions) {
    if (!/^https?:\/\//.test(options.baseUrl)) {
      throw new TypeError(`baseUrl must be an http(s) URL, got ${JSON.stringify(options.baseUrl)}`);
    }
    this.#base = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#retry = {
      maxRetries: options.retry?.maxRetries ?? 2,
      maxDelayMs: options.retry?.maxDelayMs ?? 10_000,
      onRetry: options.retry?.onRetry,
    };
    // Bound, so a browser's window.fetch is not called with this client as `this`.
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One presigned URL (or POST form) on an access point. */
  async presign(accessPoint: string, request: PresignRequest, options?: CallOptions): Promise<PresignResponse> {
    return (await this.call<PresignResponse>('POST', `/v1/access-points/${path(accessPoint)}/presign`, request, options)).body;
  }

  /**
   * Up to 100 presigns in one call. Never all-or-nothing: each result is either `presigned`
   * or `error` (a problem); check `status === 200`. Only a refusal of the whole batch throws.
   */
  async presignBatch(items: BatchItem[], options?: CallOptions): Promise<BatchResponse> {
    return (await this.call<BatchResponse>('POST', '/v1/presign/batch', { items }, options)).body;
  }

  /** Starts a multipart upload: its part plan and the first part URLs. */
  async createUpload(accessPoint: string, request: CreateUploadRequest, options?: CallOptions): Promise<CreateUploadResponse> {
    return (await this.call<CreateUploadResponse>('POST', `/v1/access-points/${path(accessPoint)}/uploads`, request, options)).body;
  }

  /** URLs for more parts (at most 1000 per call), e.g. after the first ones expired. */
  async partUrls(
    accessPoint: string,
    uploadId: string,
    partNumbers: number[],
    options?: CallOptions & { expiresIn?: number },
  ): Promise<PartsResponse> {
    const body = { part_numbers: partNumbers, ...(options?.expiresIn ? { expires_in: options.expiresIn } : {}) };
    return (await this.call<PartsResponse>('POST', `/v1/access-points/${path(accessPoint)}/uploads/${path(uploadId)}/parts`, body, options)).body;
  }

  /** Every part S3 holds for the upload, ascending (all pages), for a client that lost its ETags. */
  async listParts(accessPoint: string, uploadId: string, options?: CallOptions): Promise<UploadedPart[]> {
    const parts: UploadedPart[] = [];
    let marker: number | undefined;
    for (;;) {
      const query = marker === undefined ? '' : `?part_number_marker=${marker}`;
      const page = (await this.call<ListPartsResponse>(
        'GET', `/v1/access-points/${path(accessPoint)}/uploads/${path(uploadId)}/parts${query}`, undefined, options,
      )).body;
      parts.push(...page.parts);
      if (page.next_part_number_marker === undefined || page.next_part_number_marker === marker) return parts;
      marker = page.next_part_number_marker;
    }
  }

  /** Completes the upload from every part's ETag; the answer carries the object's verification. */
  async completeUpload(accessPoint: string, uploadId: string, parts: CompletedPart[], options?: CallOptions): Promise<CompleteResponse> {
    const sorted = [...parts].sort((a, b) => a.part_number - b.part_number);
    return (await this.call<CompleteResponse>(
      'POST', `/v1/access-points/${path(accessPoint)}/uploads/${path(uploadId)}/complete`, { parts: sorted }, options,
    )).body;
  }

  /** Aborts the upload; S3 discards its parts. */
  async abortUpload(accessPoint: string, uploadId: string, options?: CallOptions): Promise<void> {
    await this.call<unknown>('DELETE', `/v1/access-points/${path(accessPoint)}/uploads/${path(uploadId)}`, undefined, options);
  }

  /** Checks an uploaded object against what its presigned PUT, POST or multipart upload allowed. */
  async verifyUpload(accessPoint: string, request: VerifyRequest, options?: CallOptions): Promise<Verification> {
    return (await this.call<Verification>('POST', `/v1/access-points/${path(accessPoint)}/uploads/verify`, request, options)).body;
  }

  /** The access points the caller may use. */
  async accessPoints(options?: CallOptions): Promise<AccessPointList> {
    return (await this.call<AccessPointList>('GET', '/v1/access-points', undefined, options)).body;
  }

  /** Who presignd takes the caller for: issuer, subject, groups. */
  async whoami(options?: CallOptions): Promise<WhoAmI> {
    return (await this.call<WhoAmI>('GET', '/v1/whoami', undefined, options)).body;
  }

  /** Any presignd call: JSON in, JSON out (204: `undefined`), problems thrown. */
  async call<T>(method: string, route: string, body: unknown, options?: CallOptions): Promise<Answer<T>> {
    for (let attempt = 0; ; attempt++) {
      const token = typeof this.#token === 'function' ? await this.#token() : this.#token;
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const resp = await this.#fetch(this.#base + route, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(options?.signal ? { signal: options.signal } : {}),
      });
      const requestId = resp.headers.get('x-request-id');
      if (resp.ok) {
        const parsed = resp.status === 204 ? undefined : await resp.json();
        return { body: parsed as T, requestId };
      }
      const text = await resp.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const wait = retryAfterMs(resp.headers.get('retry-after'));
      const problem = new PresigndProblem(
        isProblem(json) ? json : unexpected(resp.status, resp.statusText, text, requestId ?? undefined),
        wait === undefined ? undefined : Math.ceil(wait / 1000),
      );
      const retryable = RETRYABLE.has(resp.status) && wait !== undefined && wait <= this.#retry.maxDelayMs;
      if (!retryable || attempt >= this.#retry.maxRetries) throw problem;
      this.#retry.onRetry?.({ attempt: attempt + 1, delayMs: wait, status: resp.status });
      await sleep(wait, options?.signal);
    }
  }
}
