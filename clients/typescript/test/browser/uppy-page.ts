// The page tests/typescript_client.rs opens in headless chromium: Uppy 5 with @uppy/aws-s3,
// configured by presigndUppy(), uploads a 12 MiB file in multipart (two 8 MiB-plan parts,
// straight to radosgw) and a small file with one presigned PUT. (The POST form path is tested
// from Node: radosgw answers a form upload without an ETag header, and Uppy 5 waits for one
// forever.) Settings come in the URL fragment, which never leaves the browser:
//   #api=…&ap=…&token=…&prefix=alice/uppy/&size=12582912
// The result goes to #result as JSON, with each file's SHA-256 for the test to compare with
// what radosgw stores. Bundled by esbuild (test/browser/build.mjs); type-checked by
// `tsc -p tsconfig.check.json`.

import AwsS3 from '@uppy/aws-s3';
import Uppy from '@uppy/core';
import { PresigndClient } from '../../src/index.js';
import { presigndUppy } from '../../src/uppy.js';

const params = new URLSearchParams(location.hash.slice(1));
const setting = (name: string): string => {
  const value = params.get(name);
  if (!value) throw new Error(`missing #${name}=`);
  return value;
};

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id}`);
  return el;
};
const step = (text: string) => {
  const li = document.createElement('li');
  li.textContent = text;
  $('steps').append(li);
};

/** Deterministic bytes (xorshift32), so nothing random hides a mismatch between runs. */
function bytesOf(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function run(): Promise<Record<string, unknown>> {
  const client = new PresigndClient({ baseUrl: setting('api'), token: setting('token') });
  const accessPoint = setting('ap');
  const prefix = setting('prefix');
  const big = bytesOf(Number(setting('size')), 7);
  const small = bytesOf(1000, 11);
  const out: Record<string, unknown> = { origin: location.origin };

  // One Uppy, two files: the big one in parts, the small one with one PUT.
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    ...presigndUppy(client, { accessPoint, key: (file) => `${prefix}${file.name}`, multipartThreshold: 5 * 1024 * 1024 }),
    limit: 2,
  });
  const partsUploaded: number[] = [];
  uppy.on('s3-multipart:part-uploaded', (file, part) => {
    if (file.name === 'big.bin') partsUploaded.push(part.PartNumber ?? -1);
  });
  uppy.addFile({ name: 'big.bin', type: 'application/octet-stream', data: new Blob([big]) });
  uppy.addFile({ name: 'small.bin', type: 'application/octet-stream', data: new Blob([small]) });
  step('Uppy: uploading big.bin (multipart) and small.bin (PUT)');
  const first = await uppy.upload();
  if (!first) throw new Error('Uppy did not upload');
  out.failed = first.failed?.map((f) => `${f.name}: ${String(f.error)}`) ?? [];
  out.successful = (first.successful ?? []).map((f) => f.name).sort();
  out.parts_uploaded = partsUploaded.sort((a, b) => a - b);
  out.big = { key: `${prefix}big.bin`, size: big.length, sha256: await sha256(big) };
  out.small = { key: `${prefix}small.bin`, size: small.length, sha256: await sha256(small) };
  step(`Uppy: ${String(out.successful)} uploaded, parts ${String(out.parts_uploaded)}`);
  return out;
}

run().then(
  (out) => {
    const ok = (out.failed as string[]).length === 0;
    out.state = ok ? 'done' : 'error';
    $('summary').textContent = ok ? 'done' : 'failed';
    $('result').textContent = JSON.stringify(out, null, 2);
    $('result').dataset.state = String(out.state);
  },
  (error: unknown) => {
    $('summary').textContent = 'failed';
    $('result').textContent = JSON.stringify({ state: 'error', error: String(error), stack: (error as Error)?.stack });
    $('result').dataset.state = 'error';
  },
);
