// A whole multipart upload in one call: create (presignd plans the parts and signs each with
// its exact length), PUT the parts straight to S3 a few at a time, complete with their ETags.
// On failure the upload is aborted, unless the caller wants to resume it (keepOnError).

import type { PresigndClient } from './client.js';
import { send } from './transfer.js';
import type { CompleteResponse, CompletedPart, CreateUploadRequest, PartUrl } from './types.js';

const MIB = 1024 * 1024;
/** S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10 000 of them. */
export const MIN_PART_SIZE = 5 * MIB;
export const MAX_PARTS = 10_000;

/** presignd's default part size for `contentLength` bytes: 8 MiB, or the smallest whole MiB that fits 10 000 parts. */
export function partSizeFor(contentLength: number): number {
  const fitting = Math.ceil(Math.ceil(contentLength / MAX_PARTS) / MIB) * MIB;
  return Math.max(8 * MIB, fitting);
}

export interface MultipartOptions extends Omit<CreateUploadRequest, 'content_length'> {
  /** Parts in flight at once (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Called after each part with the bytes uploaded so far and the total. */
  onProgress?: (uploaded: number, total: number) => void;
  /** Leave the upload open on failure (to resume it later with listParts), instead of aborting it. */
  keepOnError?: boolean;
}

/** Uploads `body` with a multipart upload on `accessPoint` and completes it. */
export async function uploadMultipart(
  client: PresigndClient,
  accessPoint: string,
  body: Blob,
  options: MultipartOptions,
): Promise<CompleteResponse> {
  const { concurrency = 4, signal, onProgress, keepOnError = false, ...request } = options;
  const created = await client.createUpload(accessPoint, { ...request, content_length: body.size }, signal ? { signal } : undefined);
  const urls = new Map<number, PartUrl>(created.parts.map((p) => [p.part_number, p]));
  let urlsExpire = Date.parse(created.expires_at);
  const done: CompletedPart[] = [];
  let uploaded = 0;
  let next = 1;
  let failed = false;

  // A part's URL: the held one, or a fresh batch from this part on when it is missing or close to expiry.
  const urlFor = async (partNumber: number): Promise<PartUrl> => {
    const held = urls.get(partNumber);
    if (held && urlsExpire - Date.now() > 30_000) return held;
    const wanted: number[] = [];
    for (let n = partNumber; n <= created.part_count && wanted.length < 100; n++) wanted.push(n);
    const more = await client.partUrls(accessPoint, created.upload_id, wanted, signal ? { signal } : undefined);
    urlsExpire = Date.parse(more.expires_at);
    for (const p of more.parts) urls.set(p.part_number, p);
    const fresh = urls.get(partNumber);
    if (!fresh) throw new Error(`presignd returned no URL for part ${partNumber}`);
    return fresh;
  };

  const worker = async () => {
    while (!failed && next <= created.part_count) {
      const partNumber = next++;
      const part = await urlFor(partNumber);
      const start = (partNumber - 1) * created.part_size;
      const chunk = body.slice(start, start + part.content_length);
      const resp = await send(part, chunk, signal ? { signal } : {});
      const etag = resp.headers.get('etag');
      // Readable from a browser only if the bucket's CORS rule exposes ETag (presignd bucket-cors does).
      if (!etag) throw new Error(`S3 answered part ${partNumber} without a readable ETag (does the bucket's CORS expose ETag?)`);
      done.push({ part_number: partNumber, etag });
      uploaded += chunk.size;
      onProgress?.(uploaded, body.size);
    }
  };
  const guarded = () => worker().catch((error: unknown) => {
    failed = true; // the other workers stop after their part in flight
    throw error;
  });

  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, created.part_count)) }, guarded));
    return await client.completeUpload(accessPoint, created.upload_id, done, signal ? { signal } : undefined);
  } catch (error) {
    if (!keepOnError) {
      await client.abortUpload(accessPoint, created.upload_id).catch(() => undefined);
    }
    throw error;
  }
}
