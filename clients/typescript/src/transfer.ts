// Sending the bytes straight to S3 with what presignd issued. The signed headers go along
// as they are, except the ones a browser sets itself (and refuses to be told): the body's own
// length is what was signed, so the signature still matches.

import type { PartUrl, PresignResponse } from './types.js';

const SET_BY_CLIENT = new Set(['content-length', 'host']);

/** The signed headers a fetch may set (all but `content-length` and `host`). */
export function sendableHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !SET_BY_CLIENT.has(name.toLowerCase())));
}

/** S3 refused what presignd issued (expired URL, wrong length, bucket CORS, …). */
export class S3Error extends Error {
  readonly status: number;
  readonly body: string;
  constructor(status: number, body: string, what: string) {
    super(`S3 answered ${status} to ${what}: ${body.slice(0, 300)}`);
    this.name = 'S3Error';
    this.status = status;
    this.body = body;
  }
}

export interface SendOptions {
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** POST only: the form's file name (default: the key's last segment). */
  filename?: string;
  /** Headers to send besides the signed ones, e.g. an SSE-C access point's key and key-MD5. */
  headers?: Record<string, string>;
}

/**
 * Uploads `body` with a presigned PUT URL or POST form (or, for GET and DELETE, sends no body)
 * and returns S3's response; a non-2xx answer throws S3Error.
 */
export async function send(issued: PresignResponse | PartUrl, body?: Blob | Uint8Array | string, options: SendOptions = {}): Promise<Response> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const init: RequestInit = { method: issued.method, ...(options.signal ? { signal: options.signal } : {}) };
  if ('fields' in issued && issued.fields) {
    // A form upload: presignd's fields first, the file last (S3 ignores fields after it).
    const form = new FormData();
    for (const [name, value] of Object.entries(issued.fields)) form.append(name, value);
    const blob = body instanceof Blob ? body : new Blob(body === undefined ? [] : [body as BlobPart]);
    form.append('file', blob, options.filename ?? ('key' in issued ? issued.key.split('/').pop() : undefined) ?? 'file');
    init.body = form;
  } else {
    init.headers = { ...sendableHeaders(issued.headers), ...options.headers };
    if (body !== undefined) init.body = body as BodyInit;
  }
  const resp = await doFetch(issued.url, init);
  if (!resp.ok) {
    throw new S3Error(resp.status, await resp.text().catch(() => ''), `${issued.method} ${new URL(issued.url).host}`);
  }
  return resp;
}
