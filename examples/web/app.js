// presignd from a browser: presign a PUT, upload straight to S3, presign a GET, read it back
// and show it; then the same bytes as a form upload with a presigned POST (FormData), whose
// size range, key and content type S3 itself enforces. Two more flows: a multipart upload with
// the TypeScript client (clients/typescript, built), and client-side encryption (WebCrypto
// AES-GCM: S3 only ever holds ciphertext, the key never leaves this page). No framework, no
// build step for the page itself. See index.html for how to run it locally.

const $ = (id) => document.getElementById(id);

// Headers the browser computes itself; presignd signs content-length, and the browser sends the
// body's exact length, so the signature still matches.
const SET_BY_BROWSER = new Set(['content-length', 'host']);

class StepError extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

function logStep(text, cls = 'ok') {
  const li = document.createElement('li');
  li.textContent = text;
  li.className = cls;
  $('steps').append(li);
}

// The `sub` claim, to suggest a key under `${jwt:sub}/` (display only: presignd verifies).
function subOf(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

async function presign(api, ap, token, body) {
  const url = `${api.replace(/\/+$/, '')}/v1/access-points/${encodeURIComponent(ap)}/presign`;
  let resp;
  try {
    resp = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (e) {
    // A CORS refusal is indistinguishable from a network error for the page, by design.
    throw new StepError(`presign-${body.operation}`,
      `the browser blocked the call to presignd or could not reach it (${e.message}); ` +
      `is ${location.origin} in the access point's cors_origins?`);
  }
  const json = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new StepError(`presign-${body.operation}`,
      `presignd answered ${resp.status} ${json?.code ?? ''}: ${json?.detail ?? json?.title ?? ''}`);
  }
  // Readable only because presignd exposes x-request-id to allowed origins.
  return { issued: json, requestId: resp.headers.get('x-request-id') };
}

function signedHeaders(issued) {
  return Object.fromEntries(
    Object.entries(issued.headers).filter(([k]) => !SET_BY_BROWSER.has(k.toLowerCase())));
}

async function toS3(step, issued, body) {
  let resp;
  try {
    resp = await fetch(issued.url, { method: issued.method, headers: signedHeaders(issued), body });
  } catch (e) {
    throw new StepError(step,
      `the browser blocked the request to S3 or could not reach it (${e.message}); ` +
      `does the bucket's CORS allow ${location.origin}? (presignd bucket-cors <ap> --apply)`);
  }
  if (!resp.ok) {
    const text = await resp.text().catch(() => '');
    throw new StepError(step, `S3 answered ${resp.status}: ${text.slice(0, 300)}`);
  }
  return resp;
}

// A form upload with a presigned POST: presignd's `fields` first, the file last (S3 ignores
// fields after it). The browser sets the multipart content type and boundary itself; a
// FormData body needs no CORS preflight, but reading S3's answer needs the bucket's CORS
// rule to allow POST.
async function postForm(issued, blob, filename) {
  const form = new FormData();
  for (const [name, value] of Object.entries(issued.fields)) form.append(name, value);
  form.append('file', blob, filename);
  let resp;
  try {
    resp = await fetch(issued.url, { method: 'POST', body: form });
  } catch (e) {
    throw new StepError('form-upload',
      `the browser blocked the form upload to S3 or could not reach it (${e.message}); ` +
      `does the bucket's CORS allow POST from ${location.origin}?`);
  }
  if (!resp.ok) {
    const text = await resp.text().catch(() => '');
    throw new StepError('form-upload', `S3 answered ${resp.status}: ${text.slice(0, 300)}`);
  }
  return resp;
}

// `alice/hello.txt` -> `alice/hello-form.txt`: the form upload's own key.
function formKey(key) {
  return key.replace(/(\.[^./]*)?$/, (ext) => `-form${ext}`);
}

// A small PNG drawn here (the `sample=image` setting): an image to upload and show back.
async function samplePng() {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 48;
  const g = canvas.getContext('2d');
  g.fillStyle = '#1a7f37';
  g.fillRect(0, 0, 64, 48);
  g.fillStyle = '#ffffff';
  g.fillRect(8, 8, 24, 32);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  return new Uint8Array(await blob.arrayBuffer());
}

// Shows what was read back from S3: an image as an <img>, anything else as text.
async function preview(bytes, contentType) {
  const box = $('preview');
  box.replaceChildren();
  if (contentType.startsWith('image/')) {
    const img = document.createElement('img');
    img.alt = 'the object, read back from S3';
    img.src = URL.createObjectURL(new Blob([bytes], { type: contentType }));
    box.append(img);
    await img.decode();
    return { kind: 'image', width: img.naturalWidth, height: img.naturalHeight };
  }
  const pre = document.createElement('pre');
  pre.textContent = new TextDecoder().decode(bytes.slice(0, 4096));
  box.append(pre);
  return { kind: 'text', text: pre.textContent };
}

function settings() {
  const api = $('api').value.trim();
  const ap = $('ap').value.trim();
  const token = $('token').value.trim();
  return { api, ap, token, sub: subOf(token) ?? 'me' };
}

// Runs one flow, reporting its steps, a summary and a JSON result (which the browser test reads).
async function flow(name, body) {
  $('steps').replaceChildren();
  $('summary').className = 'running';
  $('summary').textContent = `${name}: running…`;
  $('result').dataset.state = 'running';
  const out = { flow: name, origin: location.origin };
  try {
    await body(out);
    out.state = 'done';
    $('summary').className = 'done';
    $('summary').textContent = `✔ ${name} from ${location.origin}`;
  } catch (e) {
    out.state = 'error';
    out.step = e.step ?? 'page';
    out.error = e.message;
    logStep(`${out.step}: ${e.message}`, 'fail');
    $('summary').className = 'error';
    $('summary').textContent = `✘ ${name} failed at ${out.step} from ${location.origin}`;
  }
  $('result').textContent = JSON.stringify(out, null, 2);
  $('result').dataset.state = out.state;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

const run = () => flow('upload and read back', async (out) => {
  const { api, ap, token, sub } = settings();
  const key = $('key').value.trim() || `${sub}/hello.txt`;
  const file = $('file').files[0];
  const image = !file && params.get('sample') === 'image';
  const bytes = file
    ? new Uint8Array(await file.arrayBuffer())
    : image ? await samplePng() : new TextEncoder().encode($('text').value);
  const contentType = file ? (file.type || 'application/octet-stream') : image ? 'image/png' : 'text/plain';
  Object.assign(out, { api, access_point: ap, key, bytes: bytes.length, content_type: contentType });
  const put = await presign(api, ap, token, {
    operation: 'put', key, content_type: contentType, content_length: bytes.length,
  });
  out.put_request_id = put.requestId;
  out.put_url_host = new URL(put.issued.url).host;
  out.signed_headers = Object.keys(put.issued.headers).sort();
  logStep(`presignd issued a PUT URL for ${put.issued.bucket}/${put.issued.key} ` +
    `(request ${put.requestId}, expires ${put.issued.expires_at})`);

  const uploaded = await toS3('upload', put.issued, bytes);
  out.upload_status = uploaded.status;
  // Readable only if the bucket CORS rule exposes ETag.
  out.etag = uploaded.headers.get('etag');
  logStep(`uploaded ${bytes.length} bytes straight to ${out.put_url_host} (ETag ${out.etag})`);

  const get = await presign(api, ap, token, { operation: 'get', key });
  out.get_request_id = get.requestId;
  logStep(`presignd issued a GET URL (request ${get.requestId})`);

  const downloaded = await toS3('download', get.issued, undefined);
  const back = new Uint8Array(await downloaded.arrayBuffer());
  out.read_back_bytes = back.length;
  out.read_back_text = file || image ? null : new TextDecoder().decode(back);
  out.matches = back.length === bytes.length && back.every((b, i) => b === bytes[i]);
  if (!out.matches) throw new StepError('download', 'the bytes read back differ from the upload');
  out.preview = await preview(back, contentType);
  logStep(`read ${back.length} bytes back from S3: identical (shown below)`);

  const postKey = formKey(key);
  const post = await presign(api, ap, token, {
    operation: 'post', key: postKey, content_type: contentType,
  });
  out.post_request_id = post.requestId;
  out.post_key = post.issued.key;
  out.post_fields = Object.keys(post.issued.fields).sort();
  logStep(`presignd issued a POST policy for ${post.issued.bucket}/${post.issued.key} ` +
    `(request ${post.requestId})`);
  const filename = postKey.split('/').pop();
  const posted = await postForm(post.issued, new Blob([bytes], { type: contentType }), filename);
  out.post_status = posted.status;
  logStep(`form-uploaded ${bytes.length} bytes straight to ${new URL(post.issued.url).host} ` +
    `(status ${posted.status})`);
});

// A multipart upload with the TypeScript client (clients/typescript): presignd plans the
// parts and signs each with its exact length; the client PUTs them straight to S3 and
// completes. Loaded only for this flow, so the rest of the page works without building it.
const CLIENT = new URL('../../clients/typescript/dist/index.js', import.meta.url);
const runMultipart = () => flow('multipart upload (TypeScript client)', async (out) => {
  const { api, token, sub } = settings();
  const ap = $('multipart_ap').value.trim();
  let client;
  try {
    client = await import(CLIENT.href);
  } catch (e) {
    throw new StepError('load-client', `could not load ${CLIENT.pathname} (${e.message}); ` +
      'build it first: (cd clients/typescript && npm ci && npm run build)');
  }
  const key = `${sub}/multipart.bin`;
  const size = 6 * 1024 * 1024 + 1; // two parts of the 5 MiB plan below
  const bytes = new Uint8Array(size);
  // getRandomValues fills at most 64 KiB per call.
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  const presignd = new client.PresigndClient({ baseUrl: api, token });
  Object.assign(out, { access_point: ap, key, bytes: size });
  try {
    const done = await client.uploadMultipart(presignd, ap, new Blob([bytes]), {
      key, content_type: 'application/octet-stream', part_size: 5 * 1024 * 1024,
      onProgress: (sent, total) => logStep(`sent ${sent} of ${total} bytes`),
    });
    out.upload_id = done.upload_id;
    out.verification = done.verification?.status ?? null;
    logStep(`completed ${done.key}: ${done.content_length} bytes, ${out.verification}`);
    const get = await presignd.presign(ap, { operation: 'get', key });
    const back = new Uint8Array(await (await client.send(get)).arrayBuffer());
    out.matches = (await sha256Hex(back)) === (await sha256Hex(bytes));
    out.sha256 = await sha256Hex(bytes);
    if (!out.matches) throw new StepError('download', 'the bytes read back differ from the upload');
    logStep(`read ${back.length} bytes back from S3: identical`);
  } catch (e) {
    if (e instanceof StepError) throw e;
    // A PresigndProblem carries presignd's code; an S3Error S3's status.
    throw new StepError('multipart', e.code ? `presignd answered ${e.status} ${e.code}: ${e.detail}` : e.message);
  }
});

// Client-side encryption: AES-GCM in this page with a key that cannot leave it
// (non-extractable); S3 stores IV + ciphertext, declared by the signed metadata
// `x-amz-meta-cse-alg: AES-GCM`, which an access point can require
// (`upload.required_metadata: ["cse-alg"]`).
const runEncrypted = () => flow('client-side encryption', async (out) => {
  const { api, token, sub } = settings();
  const ap = $('cse_ap').value.trim();
  const key = `${sub}/secret.txt.enc`;
  const plaintext = new TextEncoder().encode($('text').value);
  const aesKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, aesKey, plaintext));
  const stored = new Uint8Array(iv.length + sealed.length);
  stored.set(iv);
  stored.set(sealed, iv.length);
  Object.assign(out, { access_point: ap, key, plaintext_bytes: plaintext.length, stored_bytes: stored.length });
  logStep(`encrypted ${plaintext.length} bytes in the page (AES-GCM, 256-bit key that cannot leave it)`);

  // Without the marker, an access point that requires it refuses the URL.
  const unmarked = await presign(api, ap, token, {
    operation: 'put', key, content_type: 'application/octet-stream', content_length: stored.length,
  }).then(() => null, (e) => e.message);
  out.unmarked = unmarked;
  const put = await presign(api, ap, token, {
    operation: 'put', key, content_type: 'application/octet-stream', content_length: stored.length,
    metadata: { 'cse-alg': 'AES-GCM' },
  });
  out.signed_headers = Object.keys(put.issued.headers).sort();
  await toS3('upload', put.issued, stored);
  logStep(`uploaded ${stored.length} bytes of IV + ciphertext (x-amz-meta-cse-alg: AES-GCM)`);

  const get = await presign(api, ap, token, { operation: 'get', key });
  const back = new Uint8Array(await (await toS3('download', get.issued, undefined)).arrayBuffer());
  let opened;
  try {
    opened = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: back.slice(0, 12) }, aesKey, back.slice(12));
  } catch {
    throw new StepError('decrypt', 'what S3 returned does not decrypt with the page\'s key');
  }
  out.decrypted_text = new TextDecoder().decode(opened);
  out.preview = await preview(new Uint8Array(opened), 'text/plain');
  logStep(`read ${back.length} bytes back and decrypted them in the page: ${opened.byteLength} bytes`);
});

// Settings come from the URL fragment (after #), which the browser never sends to a server:
// a token in the query string would land in server logs and browser history.
const params = new URLSearchParams(location.hash.slice(1));
for (const name of ['api', 'ap', 'multipart_ap', 'cse_ap', 'token', 'key', 'text']) {
  if (params.has(name)) $(name).value = params.get(name);
}
if (new URLSearchParams(location.search).has('token')) {
  logStep('ignored ?token=: pass it after # instead (a query string reaches server logs)', 'fail');
}
if (!$('key').value && subOf($('token').value)) $('key').value = `${subOf($('token').value)}/hello.txt`;
$('form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  run();
});
$('multipart').addEventListener('click', runMultipart);
$('encrypted').addEventListener('click', runEncrypted);
const autorun = { 1: run, basic: run, multipart: runMultipart, encrypted: runEncrypted }[params.get('autorun')];
if (autorun) autorun();
