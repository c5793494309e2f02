// @presignd/client: presignd's API from TypeScript (browsers and Node ≥ 20), no runtime deps.

export { PresigndClient } from './client.js';
export type { Answer, CallOptions, ClientOptions, TokenSource } from './client.js';
export { PresigndProblem, isProblem } from './problem.js';
export type { KnownProblemCode, Problem } from './problem.js';
export type { RetryOptions } from './retry.js';
export { retryAfterMs } from './retry.js';
export { S3Error, send, sendableHeaders } from './transfer.js';
export type { SendOptions } from './transfer.js';
export { MAX_PARTS, MIN_PART_SIZE, partSizeFor, uploadMultipart } from './multipart.js';
export type { MultipartOptions } from './multipart.js';
export type * from './types.js';
export type { components, paths, operations } from './schema.js';
