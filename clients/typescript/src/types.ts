// Names for the request and response shapes, all from the generated schema (src/schema.ts,
// `npm run generate`), so they follow openapi/openapi.yaml and cannot drift from it.

import type { components } from './schema.js';

type Schemas = components['schemas'];

export type PresignRequest = Schemas['PresignRequest'];
export type PresignResponse = Schemas['PresignResponse'];
export type PresignOperation = Schemas['PresignOperation'];
export type BatchItem = Schemas['BatchItem'];
export type BatchResult = Schemas['BatchResult'];
export type BatchIssued = Schemas['BatchIssued'];
export type BatchRefused = Schemas['BatchRefused'];
export type BatchResponse = Schemas['BatchResponse'];
export type CreateUploadRequest = Schemas['CreateUploadRequest'];
export type CreateUploadResponse = Schemas['CreateUploadResponse'];
export type PartUrl = Schemas['PartUrl'];
export type PartsResponse = Schemas['PartsResponse'];
export type CompleteRequest = Schemas['CompleteRequest'];
export type CompletedPart = CompleteRequest['parts'][number];
export type CompleteResponse = Schemas['CompleteResponse'];
export type ListPartsResponse = Schemas['ListPartsResponse'];
export type UploadedPart = ListPartsResponse['parts'][number];
export type VerifyRequest = Schemas['VerifyRequest'];
export type Verification = Schemas['Verification'];
export type WhoAmI = Schemas['WhoAmI'];
export type AccessPointList = Schemas['AccessPointList'];
