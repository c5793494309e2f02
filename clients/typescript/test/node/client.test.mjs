// The client against a real presignd and a real S3 (Ceph RADOS Gateway), started by
// tests/typescript_client.rs, which builds the package and passes everything in the
// environment:
//   PRESIGND_CLIENT   the built package's entry (dist/index.js in a temp dir)
//   PRESIGND_URL      presignd's base URL
//   PRESIGND_TOKEN    alice's token (group users); PRESIGND_TOKEN_BOB: bob's
// Access points: `files` (put/get under alice's own folder, up to 32 MiB, one part URL at
// creation) and `slow`
// (the same, one URL per second with a burst of one).
//
//   node --test test/node/   (from clients/typescript; only under that harness)

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';

const { PresigndClient, PresigndProblem, S3Error, send, uploadMultipart, partSizeFor, retryAfterMs } =
  await import(process.env.PRESIGND_CLIENT ?? '../../dist/index.js');

const baseUrl = process.env.PRESIGND_URL;
const token = process.env.PRESIGND_TOKEN;
assert.ok(baseUrl && token, 'run under tests/typescript_client.rs (PRESIGND_URL, PRESIGND_TOKEN)');
const client = new PresigndClient({ baseUrl, token });
const MIB = 1024 * 1024;
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('presign a PUT, upload straight to S3, presign a GET, read the same bytes back', async () => {
  const bytes = randomBytes(4096);
  const put = await client.presign('files', {
    operation: 'put', key: 'alice/node/put.bin', content_type: 'application/octet-stream', content_length: bytes.length,
  });
  assert.equal(put.method, 'PUT');
  assert.equal(put.key, 'files/alice/node/put.bin');
  assert.equal(put.headers['content-length'], String(bytes.length));
  assert.match(put.issuance_id, /^[0-9a-f-]{36}$/);
  const uploaded = await send(put, new Blob([bytes]));
  assert.equal(uploaded.status, 200);

  const get = await client.presign('files', { operation: 'get', key: 'alice/node/put.bin' });
  const back = Buffer.from(await (await send(get)).arrayBuffer());
  assert.equal(sha256(back), sha256(bytes));

  // The upload is what the issuance allowed.
  const verdict = await client.verifyUpload('files', { issuance_id: put.issuance_id });
  assert.equal(verdict.status, 'verified', JSON.stringify(verdict));
});

test('S3 refuses a body other than the signed length, and the client says so', async () => {
  const put = await client.presign('files', {
    operation: 'put', key: 'alice/node/short.bin', content_type: 'application/octet-stream', content_length: 10,
  });
  await assert.rejects(send(put, new Blob([Buffer.alloc(11)])), (e) => e instanceof S3Error && e.status === 403);
});

test('a refusal is a typed PresigndProblem with code, status and request id', async () => {
  await assert.rejects(client.presign('files', { operation: 'get', key: 'bob/secret.txt' }), (e) => {
    assert.ok(e instanceof PresigndProblem, String(e));
    assert.equal(e.status, 403);
    assert.equal(e.code, 'forbidden');
    assert.match(e.requestId, /\S/);
    assert.equal(e.problem.type, 'urn:presignd:problem:forbidden');
    return true;
  });
  await assert.rejects(client.presign('no-such-ap', { operation: 'get', key: 'alice/x' }),
    (e) => e instanceof PresigndProblem && e.status === 404 && e.code === 'not_found');
  const anonymous = new PresigndClient({ baseUrl, token: 'not-a-jwt' });
  await assert.rejects(anonymous.whoami(), (e) => e instanceof PresigndProblem && e.status === 401);
});

test('a batch answers item by item: issued ones and refused ones', async () => {
  const batch = await client.presignBatch([
    { access_point: 'files', operation: 'get', key: 'alice/node/put.bin' },
    { access_point: 'files', operation: 'get', key: 'bob/secret.txt' },
    { access_point: 'files', operation: 'put', key: 'alice/node/batch.txt', content_type: 'text/plain', content_length: 5 },
  ]);
  assert.deepEqual(batch.results.map((r) => r.status), [200, 403, 200]);
  const [first, refused, upload] = batch.results;
  assert.equal(first.presigned.key, 'files/alice/node/put.bin');
  assert.equal(refused.error.code, 'forbidden');
  await send(upload.presigned, 'hello');
  const get = await client.presign('files', { operation: 'get', key: 'alice/node/batch.txt' });
  assert.equal(await (await send(get)).text(), 'hello');
});

test('429: the client waits Retry-After and tries again; without retries it throws rate_limited', async () => {
  const waits = [];
  const patient = new PresigndClient({ baseUrl, token, retry: { maxRetries: 3, onRetry: (i) => waits.push(i) } });
  const impatient = new PresigndClient({ baseUrl, token, retry: { maxRetries: 0 } });
  const req = { operation: 'get', key: 'alice/slow.txt' };
  await patient.presign('slow', req); // takes the burst
  await assert.rejects(impatient.presign('slow', req), (e) => {
    assert.ok(e instanceof PresigndProblem);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limited');
    assert.ok(e.retryAfter >= 1, `retryAfter ${e.retryAfter}`);
    return true;
  });
  const started = Date.now();
  const issued = await patient.presign('slow', req);
  assert.equal(issued.key, 'files/alice/slow.txt');
  assert.ok(waits.length >= 1, 'it was refused at least once and retried');
  assert.equal(waits[0].status, 429);
  assert.ok(waits[0].delayMs >= 1000, JSON.stringify(waits));
  assert.ok(Date.now() - started >= waits[0].delayMs, 'it really waited');
});

test('a token function is asked before every call (a refreshed token is picked up)', async () => {
  const handed = [];
  const refreshing = new PresigndClient({ baseUrl, token: () => { handed.push(1); return token; } });
  const me = await refreshing.whoami();
  assert.equal(me.sub, 'alice', JSON.stringify(me));
  await refreshing.accessPoints();
  assert.equal(handed.length, 2);
});

test('uploadMultipart: 11 MiB in 5 MiB parts, straight to S3, completed and verified', async () => {
  const bytes = randomBytes(11 * MIB + 123);
  const progress = [];
  const done = await uploadMultipart(client, 'files', new Blob([bytes]), {
    key: 'alice/node/multipart.bin', content_type: 'application/octet-stream', part_size: 5 * MIB,
    concurrency: 2, onProgress: (n, total) => progress.push([n, total]),
  });
  assert.equal(done.key, 'files/alice/node/multipart.bin');
  assert.equal(done.content_length, bytes.length);
  assert.equal(done.verification?.status, 'verified', JSON.stringify(done));
  assert.equal(progress.length, 3);
  assert.deepEqual(progress.at(-1), [bytes.length, bytes.length]);
  const get = await client.presign('files', { operation: 'get', key: 'alice/node/multipart.bin' });
  const back = Buffer.from(await (await send(get)).arrayBuffer());
  assert.equal(sha256(back), sha256(bytes));
});

test('multipart by hand: create, one part, listParts recovers its ETag, parts URLs, complete; abort forgets', async () => {
  const size = 6 * MIB;
  const bytes = randomBytes(size);
  const created = await client.createUpload('files', { key: 'alice/node/by-hand.bin', content_length: size, part_size: 5 * MIB });
  assert.equal(created.part_count, 2);
  const first = created.parts.find((p) => p.part_number === 1);
  const firstResp = await send(first, new Blob([bytes.subarray(0, 5 * MIB)]));
  // "The app restarted": the ETag comes back from ListParts.
  const listed = await client.listParts('files', created.upload_id);
  assert.deepEqual(listed.map((p) => [p.part_number, p.etag, p.size]), [[1, firstResp.headers.get('etag'), 5 * MIB]]);
  const more = await client.partUrls('files', created.upload_id, [2]);
  assert.deepEqual(more.parts.map((p) => [p.part_number, p.content_length]), [[2, MIB]]);
  const second = await send(more.parts[0], new Blob([bytes.subarray(5 * MIB)]));
  const done = await client.completeUpload('files', created.upload_id, [
    { part_number: 2, etag: second.headers.get('etag') },
    { part_number: 1, etag: listed[0].etag },
  ]);
  assert.equal(done.content_length, size);

  const doomed = await client.createUpload('files', { key: 'alice/node/doomed.bin', content_length: size });
  await client.abortUpload('files', doomed.upload_id);
  await assert.rejects(client.listParts('files', doomed.upload_id),
    (e) => e instanceof PresigndProblem && e.status === 404 && e.code === 'upload_not_found');
});

test('uploadMultipart aborts the upload when a part fails', async () => {
  const seen = [];
  const realFetch = globalThis.fetch;
  // A fetch that lets presignd calls through, records upload ids, and breaks the second part.
  let parts = 0;
  const breaking = async (url, init) => {
    const u = String(url);
    if (u.includes('partNumber=') && ++parts === 2) throw new TypeError('network down');
    const resp = await realFetch(url, init);
    if (u.startsWith(baseUrl) && u.endsWith('/uploads') && resp.ok) seen.push((await resp.clone().json()).upload_id);
    return resp;
  };
  const flaky = new PresigndClient({ baseUrl, token, fetch: breaking });
  const bytes = randomBytes(11 * MIB);
  // send() uses the global fetch unless told; route it through the same breaking fetch.
  globalThis.fetch = breaking;
  try {
    await assert.rejects(
      uploadMultipart(flaky, 'files', new Blob([bytes]), { key: 'alice/node/broken.bin', part_size: 5 * MIB, concurrency: 1 }),
      /network down/,
    );
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.equal(seen.length, 1);
  await assert.rejects(client.listParts('files', seen[0]),
    (e) => e instanceof PresigndProblem && e.code === 'upload_not_found', 'the upload was aborted');
});

test('pure helpers: Retry-After parsing and the default part size match the server', () => {
  assert.equal(retryAfterMs('3'), 3000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs('soon'), undefined);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.equal(partSizeFor(1), 8 * MIB);
  assert.equal(partSizeFor(80_000 * MIB), 8 * MIB);
  assert.equal(partSizeFor(80_000 * MIB + 1), 9 * MIB);
});

test('the Uppy adapter, called as Uppy 5 calls it: POST form, PUT, and multipart with part URL refills', async () => {
  const { presigndUppy } = await import(new URL('./uppy.js', process.env.PRESIGND_CLIENT ?? new URL('../../dist/index.js', import.meta.url)).href);
  const file = (name, bytes) => ({ name, type: 'application/octet-stream', size: bytes.length, meta: {} });
  const adapter = (opts) => presigndUppy(client, { accessPoint: 'files', key: (f) => `alice/adapter/${f.name}`, ...opts });

  // A POST form: fields, then the file.
  const posted = randomBytes(2000);
  const form = await adapter({ singleUpload: 'post' }).getUploadParameters(file('posted.bin', posted));
  assert.equal(form.method, 'POST');
  assert.ok(form.fields.policy && form.fields['x-amz-signature'] && form.fields.key === 'files/alice/adapter/posted.bin', JSON.stringify(form.fields));
  const body = new FormData();
  for (const [k, v] of Object.entries(form.fields)) body.append(k, v);
  body.append('file', new Blob([posted]), 'posted.bin');
  assert.equal((await fetch(form.url, { method: 'POST', body })).status, 204);

  // A PUT: the signed headers minus the ones a browser sets itself.
  const put = await adapter({}).getUploadParameters(file('put.bin', posted));
  assert.equal(put.method, 'PUT');
  assert.equal(put.headers['content-type'], 'application/octet-stream');
  assert.equal(put.headers['content-length'], undefined);
  assert.equal((await fetch(put.url, { method: 'PUT', headers: put.headers, body: posted })).status, 200);

  // Multipart, 20 MiB: the part plan Uppy cuts by is presignd's (8 MiB), parts 2 and 3 come
  // from a refill (the server hands out one URL at creation), and completion takes Uppy's parts.
  const big = randomBytes(20 * MIB);
  const mp = adapter({ multipartThreshold: 5 * MIB });
  const f = file('big.bin', big);
  assert.equal(mp.shouldUseMultipart(f), true);
  assert.equal(mp.shouldUseMultipart(file('tiny', posted)), false);
  const chunk = mp.getChunkSize({ size: big.length });
  assert.equal(chunk, 8 * MIB);
  const { uploadId, key } = await mp.createMultipartUpload(f);
  assert.equal(key, 'files/alice/adapter/big.bin');
  const parts = await Promise.all([1, 2, 3].map(async (partNumber) => {
    const signed = await mp.signPart(f, { uploadId, key, partNumber });
    const slice = big.subarray((partNumber - 1) * chunk, partNumber * chunk);
    const resp = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: slice });
    assert.equal(resp.status, 200, `part ${partNumber}`);
    return { PartNumber: partNumber, ETag: resp.headers.get('etag'), Size: slice.length };
  }));
  assert.deepEqual(await mp.listParts(f, { uploadId, key }), parts);
  await mp.completeMultipartUpload(f, { uploadId, key, parts: [...parts].reverse() });
  const get = await client.presign('files', { operation: 'get', key: 'alice/adapter/big.bin' });
  assert.equal(sha256(Buffer.from(await (await send(get)).arrayBuffer())), sha256(big));

  // Abort: presignd forgets the upload.
  const doomed = await mp.createMultipartUpload(f);
  await mp.abortMultipartUpload(f, doomed);
  await assert.rejects(client.listParts('files', doomed.uploadId), (e) => e.code === 'upload_not_found');
});
