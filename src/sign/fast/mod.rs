//! The fast path: SigV4 query-string presigning done here for plain buckets, producing the
//! same URL byte for byte as aws-sdk-s3's `.presigned()` (tests/signing_reference.rs holds the
//! two side by side). The SDK costs ~25 µs per URL, mostly request orchestration and deriving
//! the signing key; here the key is derived once per credential and day, and a URL is one
//! pre-sized String, one canonical-request buffer, one SHA-256 and one HMAC.
//!
//! It covers what most deployments use: a plain bucket on AWS (regional endpoints of the `aws`
//! partition) or on a custom endpoint (`scheme://host[:port][/]`), virtual-hosted or path-style.
//! Everything else (access point and Object Lambda ARNs, other partitions, endpoints with a
//! path, header values the SDK would reject) returns `None` from [`FastSigner::route`] and goes
//! through the SDK.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_credential_types::Credentials;
use aws_lc_rs::{digest, hmac};
use time::OffsetDateTime;

use super::{RECORD_ID_PARAM, SignRequest, SignedHeaders};
use crate::config::S3Config;
use crate::policy::{Encryption, Operation, Target};

const SERVICE: &str = "s3";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const META_PREFIX: &str = "x-amz-meta-";

/// Where a plain bucket's requests go, fixed by the S3 configuration. (No `Debug`: it holds
/// signing keys.)
pub(super) struct FastSigner {
    scheme: &'static str,
    /// As written in the endpoint (the SDK keeps an explicit default port in the URL).
    authority: String,
    /// What the Host header carries: the authority without a default port.
    host_header: String,
    /// `s3.force_path_style`.
    force_path_style: bool,
    /// An IP-address endpoint: no bucket subdomain, so path-style for single-label buckets.
    ip_host: bool,
    region: String,
    /// Starts as a placeholder that matches no credentials.
    key: ArcSwap<SigningKey>,
}

/// The derived SigV4 signing key for one (credentials, date); region and service are the
/// signer's own.
struct SigningKey {
    access_key_id: String,
    /// Kept to notice rotated credentials that reuse an access key id.
    secret: String,
    date: [u8; 8],
    key: hmac::Key,
    /// `AKID%2FYYYYMMDD%2Fregion%2Fs3%2Faws4_request`, ready for the URL and canonical query.
    credential_param: String,
    /// `YYYYMMDD/region/s3/aws4_request` for the string to sign.
    scope: String,
    session_token: Option<String>,
    /// The percent-encoded session token.
    token_param: Option<String>,
}

/// A signing key borrowed from the cache (an arc-swap guard: no shared reference count is
/// written on a hit, which matters with several cores signing) or just derived.
enum KeyRef {
    Cached(arc_swap::Guard<Arc<SigningKey>>),
    Fresh(Arc<SigningKey>),
}

impl std::ops::Deref for KeyRef {
    type Target = SigningKey;

    fn deref(&self) -> &SigningKey {
        match self {
            KeyRef::Cached(k) => k,
            KeyRef::Fresh(k) => k,
        }
    }
}

/// How one request is addressed; decided by [`FastSigner::route`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Route<'a> {
    bucket: &'a str,
    virtual_host: bool,
}

pub(super) struct Signed {
    pub url: String,
    pub signature: String,
    pub headers: SignedHeaders,
}

impl FastSigner {
    /// `None` when this configuration is outside what the fast path reproduces exactly.
    pub(super) fn new(cfg: &S3Config) -> Option<FastSigner> {
        let (scheme, authority, ip_host) = match &cfg.endpoint {
            None => {
                if !is_aws_partition_region(&cfg.region) {
                    return None;
                }
                ("https", format!("s3.{}.amazonaws.com", cfg.region), false)
            }
            Some(ep) => {
                let (scheme, rest) = if let Some(rest) = ep.strip_prefix("https://") {
                    ("https", rest)
                } else if let Some(rest) = ep.strip_prefix("http://") {
                    ("http", rest)
                } else {
                    return None;
                };
                let authority = rest.strip_suffix('/').unwrap_or(rest);
                let (host, port) = match authority.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (authority, None),
                };
                let host_ok = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                let port_ok =
                    port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if !host_ok || !port_ok {
                    return None;
                }
                let is_ip = host.parse::<Ipv4Addr>().is_ok();
                (scheme, authority.to_string(), is_ip)
            }
        };
        let host_header = match authority.split_once(':') {
            Some((host, port))
                if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") =>
            {
                host.to_string()
            }
            _ => authority.clone(),
        };
        Some(FastSigner {
            scheme,
            authority,
            host_header,
            force_path_style: cfg.force_path_style,
            ip_host,
            region: cfg.region.clone(),
            key: ArcSwap::from_pointee(SigningKey::placeholder()),
        })
    }

    pub(super) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// How to address `req`, or `None` when the SDK must sign it.
    pub(super) fn route<'a>(&self, req: &SignRequest<'a>) -> Option<Route<'a>> {
        let Target::Bucket(bucket) = req.target else {
            return None;
        };
        // Conditional writes are left to the SDK (rare, and one more signed header).
        if req.create_only {
            return None;
        }
        let bucket = bucket.as_str();
        // Target parsing already restricts names to [a-z0-9.-]; a dotted name is not a
        // single DNS label, so the SDK addresses it path-style over https, but virtual-hosted
        // over plain http, even on an IP endpoint (cases left to the SDK).
        let name_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !name_ok {
            return None;
        }
        let dotted = bucket.contains('.');
        if dotted && !self.force_path_style && !self.is_https() {
            return None;
        }
        let header_safe = |v: &str| v.bytes().all(|b| (0x20..=0x7e).contains(&b));
        let headers_ok = match req.operation {
            Operation::Put => {
                req.content_type.is_none_or(header_safe)
                    && req.checksum_sha256.is_none_or(header_safe)
                    && match req.encryption {
                        Encryption::SseKms { kms_key_id } => header_safe(kms_key_id),
                        _ => true,
                    }
                    && req.metadata.iter().all(|(k, v)| {
                        !k.is_empty()
                            && k.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                            && header_safe(v)
                    })
            }
            Operation::Get | Operation::Delete => true,
        };
        if !headers_ok {
            return None;
        }
        Some(Route {
            bucket,
            virtual_host: !self.force_path_style && !self.ip_host && !dotted,
        })
    }

    /// Signs `req` addressed as `route`, valid `expires_in` from `req.now`.
    pub(super) fn sign(
        &self,
        creds: &Credentials,
        req: &SignRequest<'_>,
        route: Route<'_>,
        expires_in: Duration,
    ) -> Signed {
        let amz_date = amz_date(OffsetDateTime::from(req.now));
        let mut date = [0u8; 8];
        date.copy_from_slice(&amz_date.as_bytes()[..8]);
        let key = self.signing_key(creds, date);
        let amz_date = amz_date.as_str();
        let headers = Headers::new(req);

        // The URL, in the order the SDK writes it: its own query (x-id, response overrides),
        // our record id, then the signer's parameters.
        let mut url = String::with_capacity(
            160 + self.authority.len()
                + route.bucket.len()
                + 3 * (req.key.len() + req.record_id.len())
                + req.response_content_disposition.map_or(0, |s| 3 * s.len())
                + req.response_content_type.map_or(0, |s| 3 * s.len())
                + key.credential_param.len()
                + key.token_param.as_ref().map_or(0, |t| t.len() + 24)
                + headers.names_len(),
        );
        url.push_str(self.scheme);
        url.push_str("://");
        if route.virtual_host {
            url.push_str(route.bucket);
            url.push('.');
        }
        url.push_str(&self.authority);
        let path_start = url.len();
        url.push('/');
        if !route.virtual_host {
            url.push_str(route.bucket);
            url.push('/');
        }
        percent_encode_into(&mut url, req.key, true);
        let path = path_start..url.len();
        url.push_str("?x-id=");
        url.push_str(match req.operation {
            Operation::Get => "GetObject",
            Operation::Put => "PutObject",
            Operation::Delete => "DeleteObject",
        });
        let (mut disposition, mut content_type) = (None, None);
        if req.operation == Operation::Get {
            if let Some(d) = req.response_content_disposition {
                url.push_str("&response-content-disposition=");
                let start = url.len();
                percent_encode_into(&mut url, d, false);
                disposition = Some(start..url.len());
            }
            if let Some(t) = req.response_content_type {
                url.push_str("&response-content-type=");
                let start = url.len();
                percent_encode_into(&mut url, t, false);
                content_type = Some(start..url.len());
            }
        }
        url.push('&');
        url.push_str(RECORD_ID_PARAM);
        url.push('=');
        let start = url.len();
        percent_encode_into(&mut url, req.record_id, false);
        let record_id = start..url.len();
        url.push_str("&X-Amz-Algorithm=");
        url.push_str(ALGORITHM);
        url.push_str("&X-Amz-Credential=");
        url.push_str(&key.credential_param);
        url.push_str("&X-Amz-Date=");
        url.push_str(amz_date);
        url.push_str("&X-Amz-Expires=");
        let start = url.len();
        push_u64(&mut url, expires_in.as_secs());
        let expires = start..url.len();
        url.push_str("&X-Amz-SignedHeaders=");
        let start = url.len();
        headers.for_each(&self.host_header, route, |name, _| {
            if url.len() > start {
                url.push_str("%3B");
            }
            name.push_to(&mut url);
        });
        let signed_headers = start..url.len();

        // The canonical request: the query sorted by (encoded) name, headers by name.
        let mut creq = String::with_capacity(url.len() + 2 * headers.names_len() + 256);
        creq.push_str(req.operation.http_method());
        creq.push('\n');
        creq.push_str(&url[path]);
        creq.push_str("\nX-Amz-Algorithm=");
        creq.push_str(ALGORITHM);
        creq.push_str("&X-Amz-Credential=");
        creq.push_str(&key.credential_param);
        creq.push_str("&X-Amz-Date=");
        creq.push_str(amz_date);
        creq.push_str("&X-Amz-Expires=");
        creq.push_str(&url[expires]);
        if let Some(token) = &key.token_param {
            creq.push_str("&X-Amz-Security-Token=");
            creq.push_str(token);
        }
        creq.push_str("&X-Amz-SignedHeaders=");
        creq.push_str(&url[signed_headers]);
        if let Some(d) = disposition {
            creq.push_str("&response-content-disposition=");
            creq.push_str(&url[d]);
        }
        if let Some(t) = content_type {
            creq.push_str("&response-content-type=");
            creq.push_str(&url[t]);
        }
        creq.push_str("&x-id=");
        creq.push_str(match req.operation {
            Operation::Get => "GetObject",
            Operation::Put => "PutObject",
            Operation::Delete => "DeleteObject",
        });
        creq.push('&');
        creq.push_str(RECORD_ID_PARAM);
        creq.push('=');
        creq.push_str(&url[record_id]);
        creq.push('\n');
        headers.for_each(&self.host_header, route, |name, value| {
            name.push_to(&mut creq);
            creq.push(':');
            value.write_canonical(&mut creq, route.bucket);
            creq.push('\n');
        });
        creq.push('\n');
        let mut first = true;
        headers.for_each(&self.host_header, route, |name, _| {
            if !first {
                creq.push(';');
            }
            first = false;
            name.push_to(&mut creq);
        });
        creq.push('\n');
        creq.push_str(UNSIGNED_PAYLOAD);
        let creq_hash = digest::digest(&digest::SHA256, creq.as_bytes());

        // The string to sign reuses the canonical request's buffer.
        creq.clear();
        creq.push_str(ALGORITHM);
        creq.push('\n');
        creq.push_str(amz_date);
        creq.push('\n');
        creq.push_str(&key.scope);
        creq.push('\n');
        push_hex(&mut creq, creq_hash.as_ref());
        let tag = hmac::sign(&key.key, creq.as_bytes());

        url.push_str("&X-Amz-Signature=");
        let start = url.len();
        push_hex(&mut url, tag.as_ref());
        let signature = url[start..].to_string();
        if let Some(token) = &key.token_param {
            url.push_str("&X-Amz-Security-Token=");
            url.push_str(token);
        }

        let mut returned = SignedHeaders::new();
        headers.for_each(&self.host_header, route, |name, value| {
            let value = match value {
                HeaderValue::Host(..) => return,
                HeaderValue::Len(n) => itoa::Buffer::new().format(n).to_owned(),
                HeaderValue::Raw(v) => v.to_string(),
            };
            returned.insert(name.to_cow(), value);
        });
        Signed {
            url,
            signature,
            headers: returned,
        }
    }

    /// The cached signing key for these credentials and date, derived on a miss (once per
    /// credential and UTC day).
    fn signing_key(&self, creds: &Credentials, date: [u8; 8]) -> KeyRef {
        let k = self.key.load();
        if k.date == date
            && k.access_key_id == creds.access_key_id()
            && k.secret == creds.secret_access_key()
            && k.session_token.as_deref() == creds.session_token()
        {
            return KeyRef::Cached(k);
        }
        let k = Arc::new(SigningKey::derive(creds, date, &self.region));
        self.key.store(Arc::clone(&k));
        KeyRef::Fresh(k)
    }
}

impl SigningKey {
    /// Never matches: its date is not one.
    fn placeholder() -> SigningKey {
        SigningKey {
            access_key_id: String::new(),
            secret: String::new(),
            date: [0; 8],
            key: hmac::Key::new(hmac::HMAC_SHA256, &[]),
            credential_param: String::new(),
            scope: String::new(),
            session_token: None,
            token_param: None,
        }
    }

    fn derive(creds: &Credentials, date: [u8; 8], region: &str) -> SigningKey {
        let date_str = std::str::from_utf8(&date).unwrap_or_default();
        let k_secret = format!("AWS4{}", creds.secret_access_key());
        let mac = |key: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        };
        let k_date = mac(k_secret.as_bytes(), date_str);
        let k_region = mac(k_date.as_ref(), region);
        let k_service = mac(k_region.as_ref(), SERVICE);
        let k_signing = mac(k_service.as_ref(), "aws4_request");
        let scope = format!("{date_str}/{region}/{SERVICE}/aws4_request");
        let mut credential_param = String::new();
        percent_encode_into(
            &mut credential_param,
            &format!("{}/{scope}", creds.access_key_id()),
            false,
        );
        let token_param = creds.session_token().map(|t| {
            let mut s = String::with_capacity(t.len() * 3 / 2);
            percent_encode_into(&mut s, t, false);
            s
        });
        SigningKey {
            access_key_id: creds.access_key_id().to_string(),
            secret: creds.secret_access_key().to_string(),
            date,
            key: hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref()),
            credential_param,
            scope,
            session_token: creds.session_token().map(str::to_string),
            token_param,
        }
    }
}

/// The signed headers of one request besides `host`, in canonical (sorted) order.
struct Headers<'r> {
    content_length: Option<u64>,
    content_type: Option<&'r str>,
    checksum: Option<&'r str>,
    metadata: Option<&'r BTreeMap<String, String>>,
    sse: Option<&'static str>,
    kms_key_id: Option<&'r str>,
    sse_c: bool,
}

/// A signed header's (lowercase) name.
#[derive(Clone, Copy)]
enum HeaderName<'n> {
    Fixed(&'static str),
    /// `x-amz-meta-{name}`.
    Meta(&'n str),
}

impl HeaderName<'_> {
    fn push_to(self, out: &mut String) {
        match self {
            HeaderName::Fixed(name) => out.push_str(name),
            HeaderName::Meta(name) => {
                out.push_str(META_PREFIX);
                out.push_str(name);
            }
        }
    }

    /// The name as a returned-header key: fixed names are borrowed, only metadata is built.
    fn to_cow(self) -> Cow<'static, str> {
        match self {
            HeaderName::Fixed(name) => Cow::Borrowed(name),
            HeaderName::Meta(name) => {
                let mut full = String::with_capacity(META_PREFIX.len() + name.len());
                self.push_to(&mut full);
                Cow::Owned(full)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum HeaderValue<'v> {
    /// The Host header (the bucket subdomain is prepended when virtual-hosted).
    Host(&'v str, bool),
    Len(u64),
    Raw(&'v str),
}

impl HeaderValue<'_> {
    /// SigV4's canonical value: surrounding spaces trimmed, runs of spaces collapsed.
    fn write_canonical(self, out: &mut String, bucket: &str) {
        match self {
            HeaderValue::Host(host, virtual_host) => {
                if virtual_host {
                    out.push_str(bucket);
                    out.push('.');
                }
                out.push_str(host);
            }
            HeaderValue::Len(n) => push_u64(out, n),
            // The usual value has nothing to trim or collapse.
            HeaderValue::Raw(v)
                if !v.starts_with(' ') && !v.ends_with(' ') && !v.contains("  ") =>
            {
                out.push_str(v);
            }
            HeaderValue::Raw(v) => {
                let mut prev_space = false;
                for c in v.trim_matches(' ').chars() {
                    if c == ' ' && prev_space {
                        continue;
                    }
                    prev_space = c == ' ';
                    out.push(c);
                }
            }
        }
    }
}

impl<'r> Headers<'r> {
    fn new(req: &SignRequest<'r>) -> Headers<'r> {
        let sse_c = matches!(req.encryption, Encryption::SseC);
        match req.operation {
            Operation::Put => Headers {
                // aws-sdk-s3 takes an i64.
                content_length: req
                    .content_length
                    .map(|n| n.min(u64::try_from(i64::MAX).unwrap_or(u64::MAX))),
                content_type: req.content_type,
                checksum: req.checksum_sha256,
                metadata: Some(req.metadata),
                sse: match req.encryption {
                    Encryption::SseS3 => Some("AES256"),
                    Encryption::SseKms { .. } => Some("aws:kms"),
                    Encryption::None | Encryption::SseC => None,
                },
                kms_key_id: match req.encryption {
                    Encryption::SseKms { kms_key_id } => Some(kms_key_id),
                    _ => None,
                },
                sse_c,
            },
            Operation::Get => Headers {
                sse_c,
                ..Headers::none()
            },
            Operation::Delete => Headers::none(),
        }
    }

    fn none() -> Headers<'r> {
        Headers {
            content_length: None,
            content_type: None,
            checksum: None,
            metadata: None,
            sse: None,
            kms_key_id: None,
            sse_c: false,
        }
    }

    /// An upper bound of the signed-headers list's length, for pre-sizing.
    fn names_len(&self) -> usize {
        100 + self
            .metadata
            .map_or(0, |m| m.keys().map(|k| k.len() + 16).sum())
            + if self.sse_c { 60 } else { 0 }
    }

    /// Calls `f(name, value)` for every signed header, sorted by full name.
    fn for_each<'s>(
        &'s self,
        host: &'s str,
        route: Route<'_>,
        mut f: impl FnMut(HeaderName<'s>, HeaderValue<'s>),
    ) {
        use HeaderName::Fixed;
        if let Some(n) = self.content_length {
            f(Fixed("content-length"), HeaderValue::Len(n));
        }
        if let Some(t) = self.content_type {
            f(Fixed("content-type"), HeaderValue::Raw(t));
        }
        f(Fixed("host"), HeaderValue::Host(host, route.virtual_host));
        if let Some(c) = self.checksum {
            f(Fixed("x-amz-checksum-sha256"), HeaderValue::Raw(c));
        }
        if let Some(meta) = self.metadata {
            for (k, v) in meta {
                f(HeaderName::Meta(k), HeaderValue::Raw(v));
            }
        }
        if let Some(s) = self.sse {
            f(Fixed("x-amz-server-side-encryption"), HeaderValue::Raw(s));
        }
        if let Some(k) = self.kms_key_id {
            f(
                Fixed("x-amz-server-side-encryption-aws-kms-key-id"),
                HeaderValue::Raw(k),
            );
        }
        if self.sse_c {
            f(
                Fixed("x-amz-server-side-encryption-customer-algorithm"),
                HeaderValue::Raw("AES256"),
            );
        }
    }
}

/// Regions of the `aws` partition by its region regex, `^(us|eu|ap|sa|ca|me|af)-\w+-\d+$`:
/// their endpoint is `s3.{region}.amazonaws.com`. Other partitions go through the SDK.
fn is_aws_partition_region(region: &str) -> bool {
    let mut parts = region.split('-');
    let (Some(area), Some(mid), Some(num), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    ["us", "eu", "ap", "sa", "ca", "me", "af"].contains(&area)
        && !mid.is_empty()
        && mid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMMDDTHHMMSSZ` (UTC), written digit by digit (`fmt` with widths was a tenth of the
/// signer's time).
fn amz_date(t: OffsetDateTime) -> String {
    let mut s = String::with_capacity(16);
    let year = u32::try_from(t.year()).unwrap_or(0);
    push_digits(&mut s, year, 4);
    push_digits(&mut s, u32::from(u8::from(t.month())), 2);
    push_digits(&mut s, u32::from(t.day()), 2);
    s.push('T');
    push_digits(&mut s, u32::from(t.hour()), 2);
    push_digits(&mut s, u32::from(t.minute()), 2);
    push_digits(&mut s, u32::from(t.second()), 2);
    s.push('Z');
    s
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// `n` in decimal, without `fmt` (itoa: no padding or width machinery).
fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// RFC 3986 percent-encoding of everything but unreserved characters (and `/` in a path),
/// uppercase hex, which is what aws-smithy's label and query encoders produce.
fn percent_encode_into(out: &mut String, s: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests;
