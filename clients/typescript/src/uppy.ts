// presignd behind Uppy's S3 uploader (@uppy/aws-s3 5.x): pass what presigndUppy() returns to
// `uppy.use(AwsS3, …)`. Small files go up with one presigned PUT (or POST form); large ones
// with presignd's multipart upload, whose part plan (each part signed with its exact length)
// this adapter makes Uppy cut the file by.
//
// Uppy 6's @uppy/aws-s3 no longer takes these hooks: it signs raw S3 requests
// (CreateMultipartUpload, CompleteMultipartUpload, …) and sends them itself, while presignd
// runs those calls server-side (to plan and audit the parts), so it needs Uppy 5.

import type { PresigndClient } from './client.js';
import { partSizeFor } from './multipart.js';
import { sendableHeaders } from './transfer.js';
import type { PartUrl } from './types.js';

/** The parts of an Uppy file this adapter reads (Uppy 5's UppyFile has them all). */
export interface UppyFileLike {
  name?: string;
  type?: string;
  size: number | null;
  meta: Record<string, unknown>;
}

export interface PresigndUppyOptions<F extends UppyFileLike = UppyFileLike> {
  /** The access point every file goes to. */
  accessPoint: string;
  /** The object key for a file, relative to the access point's prefix (e.g. `${userId}/${file.name}`). */
  key: (file: F) => string;
  /** Files up to this size go up in one request; larger ones in parts. Default 100 MiB, as Uppy's. */
  multipartThreshold?: number;
  /** One-request uploads as a presigned `put` (default) or a `post` form. */
  singleUpload?: 'put' | 'post';
  /** `x-amz-meta-*` metadata for a file, when the access point requires some. */
  metadata?: (file: F) => Record<string, string>;
  /** Lifetime asked for each URL (seconds); the access point's default otherwise. */
  expiresIn?: number;
}

/** Uppy 5's part description (`AwsS3Part`). */
export interface UppyPart {
  PartNumber?: number;
  Size?: number;
  ETag?: string;
}

type SignedRequest = { method: 'PUT'; url: string; headers: Record<string, string> };
type FormRequest = { method: 'POST'; url: string; fields: Record<string, string>; headers: Record<string, string> };

/** What one open upload's part URLs are, so that Uppy's signPart costs presignd one call per 100 parts. */
interface OpenUpload {
  partCount: number;
  urls: Map<number, PartUrl>;
  expiresAt: number;
  refill: Promise<void> | null;
}

const REFILL = 100;

/** Uppy types the upload id as optional on some hooks; presignd cannot act without it. */
function uploadIdOf(opts: { uploadId?: string }): string {
  if (!opts.uploadId) throw new TypeError('Uppy passed no uploadId');
  return opts.uploadId;
}
const MARGIN_MS = 30_000;

/** Options for `@uppy/aws-s3` 5.x that route every step through presignd. */
export function presigndUppy<F extends UppyFileLike>(client: PresigndClient, options: PresigndUppyOptions<F>) {
  const { accessPoint, expiresIn } = options;
  const threshold = options.multipartThreshold ?? 100 * 1024 * 1024;
  const open = new Map<string, OpenUpload>();
  const lifetime = expiresIn === undefined ? {} : { expires_in: expiresIn };
  const metadata = (file: F) => (options.metadata ? { metadata: options.metadata(file) } : {});
  const contentType = (file: F) => (file.type ? { content_type: file.type } : {});
  const sizeOf = (file: F) => {
    if (file.size === null) throw new TypeError('presignd needs each file\'s size up front (Uppy gave null)');
    return file.size;
  };

  const refill = async (uploadId: string, upload: OpenUpload, from: number, signal?: AbortSignal) => {
    const wanted: number[] = [];
    for (let n = from; n <= upload.partCount && wanted.length < REFILL; n++) wanted.push(n);
    const more = await client.partUrls(accessPoint, uploadId, wanted, {
      ...(signal ? { signal } : {}),
      ...(expiresIn === undefined ? {} : { expiresIn }),
    });
    upload.expiresAt = Date.parse(more.expires_at);
    for (const p of more.parts) upload.urls.set(p.part_number, p);
  };

  return {
    shouldUseMultipart: (file: F) => sizeOf(file) > threshold,

    // Uppy cuts the file by this size; presignd signed each part's exact length by the same size.
    getChunkSize: (file: { size: number }) => partSizeFor(file.size),

    async getUploadParameters(file: F, opts?: { signal?: AbortSignal }): Promise<SignedRequest | FormRequest> {
      const call = opts?.signal ? { signal: opts.signal } : undefined;
      const key = options.key(file);
      if (options.singleUpload === 'post') {
        const issued = await client.presign(accessPoint, { operation: 'post', key, ...contentType(file), ...metadata(file), ...lifetime }, call);
        return { method: 'POST', url: issued.url, fields: issued.fields ?? {}, headers: {} };
      }
      const issued = await client.presign(
        accessPoint,
        { operation: 'put', key, content_length: sizeOf(file), ...contentType(file), ...metadata(file), ...lifetime },
        call,
      );
      return { method: 'PUT', url: issued.url, headers: sendableHeaders(issued.headers) };
    },

    async createMultipartUpload(file: F): Promise<{ uploadId: string; key: string }> {
      const size = sizeOf(file);
      const created = await client.createUpload(accessPoint, {
        key: options.key(file),
        content_length: size,
        part_size: partSizeFor(size),
        ...contentType(file),
        ...metadata(file),
        ...lifetime,
      });
      open.set(created.upload_id, {
        partCount: created.part_count,
        urls: new Map(created.parts.map((p) => [p.part_number, p])),
        expiresAt: Date.parse(created.expires_at),
        refill: null,
      });
      return { uploadId: created.upload_id, key: created.key };
    },

    async signPart(_file: F, opts: { uploadId: string; partNumber: number; signal?: AbortSignal }): Promise<SignedRequest> {
      let upload = open.get(opts.uploadId);
      if (!upload) {
        // Resumed after a reload (Uppy's Golden Retriever): learn the part count from the first refill.
        upload = { partCount: opts.partNumber, urls: new Map(), expiresAt: 0, refill: null };
        open.set(opts.uploadId, upload);
      }
      for (;;) {
        const held = upload.urls.get(opts.partNumber);
        if (held && upload.expiresAt - Date.now() > MARGIN_MS) {
          return { method: 'PUT', url: held.url, headers: sendableHeaders(held.headers) };
        }
        if (!upload.refill) {
          const u = upload;
          u.refill = refill(opts.uploadId, u, opts.partNumber, opts.signal).finally(() => {
            u.refill = null;
          });
        }
        await upload.refill;
        if (!upload.urls.has(opts.partNumber)) {
          // The refill in flight was for other parts: ask for this one.
          await refill(opts.uploadId, upload, opts.partNumber, opts.signal);
          if (!upload.urls.has(opts.partNumber)) throw new Error(`presignd returned no URL for part ${opts.partNumber}`);
        }
      }
    },

    async listParts(_file: F, opts: { uploadId?: string; signal?: AbortSignal }): Promise<UppyPart[]> {
      const parts = await client.listParts(accessPoint, uploadIdOf(opts), opts.signal ? { signal: opts.signal } : undefined);
      return parts.map((p) => ({ PartNumber: p.part_number, Size: p.size, ETag: p.etag }));
    },

    async completeMultipartUpload(
      _file: F,
      opts: { uploadId: string; parts: UppyPart[]; signal?: AbortSignal },
    ): Promise<{ location?: string }> {
      const parts = opts.parts.map((p) => {
        if (p.PartNumber === undefined || p.ETag === undefined) {
          throw new Error('a part without its number or ETag (does the bucket\'s CORS expose ETag?)');
        }
        return { part_number: p.PartNumber, etag: p.ETag };
      });
      await client.completeUpload(accessPoint, opts.uploadId, parts, opts.signal ? { signal: opts.signal } : undefined);
      open.delete(opts.uploadId);
      return {};
    },

    async abortMultipartUpload(_file: F, opts: { uploadId?: string; signal?: AbortSignal }): Promise<void> {
      const uploadId = uploadIdOf(opts);
      open.delete(uploadId);
      await client.abortUpload(accessPoint, uploadId, opts.signal ? { signal: opts.signal } : undefined);
    },
  };
}
