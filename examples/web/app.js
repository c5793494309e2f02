// presignd from a browser: presign a PUT, upload straight to S3, presign a GET, read it back;
// then the same bytes as a form upload with a presigned POST (FormData), whose size range,
// key and content type S3 itself enforces. No framework, no build step. See index.html for
// how to run it locally.

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

async function run() {
  const api = $('api').value.trim();
  const ap = $('ap').value.trim();
  const token = $('token').value.trim();
  const key = $('key').value.trim() || `${subOf(token) ?? 'me'}/hello.txt`;
  const file = $('file').files[0];
  const bytes = file
    ? new Uint8Array(await file.arrayBuffer())
    : new TextEncoder().encode($('text').value);
  const contentType = file ? (file.type || 'application/octet-stream') : 'text/plain';

  $('steps').replaceChildren();
  $('summary').className = 'running';
  $('summary').textContent = 'running…';
  $('result').dataset.state = 'running';
  const out = { origin: location.origin, api, access_point: ap, key, bytes: bytes.length };
  try {
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
    out.read_back_text = file ? null : new TextDecoder().decode(back);
    out.matches = back.length === bytes.length && back.every((b, i) => b === bytes[i]);
    if (!out.matches) throw new StepError('download', 'the bytes read back differ from the upload');
    logStep(`read ${back.length} bytes back from S3: identical`);

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

    out.state = 'done';
    $('summary').className = 'done';
    $('summary').textContent = `✔ uploaded and read back ${key} from ${location.origin}`;
  } catch (e) {
    out.state = 'error';
    out.step = e.step ?? 'page';
    out.error = e.message;
    logStep(`${out.step}: ${e.message}`, 'fail');
    $('summary').className = 'error';
    $('summary').textContent = `✘ failed at ${out.step} from ${location.origin}`;
  }
  $('result').textContent = JSON.stringify(out, null, 2);
  $('result').dataset.state = out.state;
}

const params = new URLSearchParams(location.search);
for (const name of ['api', 'ap', 'token', 'key', 'text']) {
  if (params.has(name)) $(name).value = params.get(name);
}
if (!$('key').value && subOf($('token').value)) $('key').value = `${subOf($('token').value)}/hello.txt`;
$('form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  run();
});
if (params.get('autorun') === '1') run();
