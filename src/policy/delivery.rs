//! `delivery`: where an access point's GETs are served from. S3 by default; with
//! `delivery.cloudfront`, a CloudFront distribution whose origin is the access point's bucket,
//! through CloudFront signed URLs and cookies. PUTs, DELETEs and uploads always go to S3.
//!
//! The private key is not here: access points are written over the admin API, and a key file
//! named there would let an admin make the server read any file. The spec names the key's id;
//! `[[cloudfront.keys]]` in the server configuration holds the key.

use serde::{Deserialize, Serialize};

use crate::cloudfront::check_key_pair_id;
use crate::cloudfront::policy::encode_path;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudfront: Option<CloudFrontDelivery>,
}

impl Delivery {
    /// S3 presigned URLs: nothing configured.
    pub fn is_s3(&self) -> bool {
        self.cloudfront.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontDelivery {
    /// The distribution's domain (`d111111abcdef8.cloudfront.net`) or an alternate domain
    /// name; URLs are always `https://`.
    pub domain: String,
    /// How the access point's prefix appears on that domain: `/video/` when the distribution
    /// serves the bucket's `video/` at `/video/`. Starts and ends with `/`. Absent: `/` + the
    /// access point's prefix (a distribution serving the bucket at its root), so a URL can
    /// never name a key outside the prefix by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The public key's id in the distribution's trusted key group; its private key must be
    /// in `[[cloudfront.keys]]`. Change it to rotate keys without a restart.
    pub key_pair_id: String,
    /// The `Domain` of the signed cookies' `Set-Cookie` (`example.com` when presignd is
    /// `api.example.com` and the distribution `media.example.com`); absent: host-only cookies,
    /// for presignd served from the distribution's own domain. Must cover `domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
}

impl CloudFrontDelivery {
    /// The URL path of the access point's prefix on the distribution.
    pub fn path_prefix_for(&self, ap_prefix: &str) -> String {
        match &self.path_prefix {
            Some(p) => p.clone(),
            None => format!("/{}", encode_path(ap_prefix)),
        }
    }

    /// The URL path of `key` (or of a key prefix) relative to the access point's prefix
    /// `ap_prefix`, on the distribution.
    pub fn path_of(&self, ap_prefix: &str, key: &str) -> String {
        format!("{}{}", self.path_prefix_for(ap_prefix), encode_path(key))
    }

    /// The URL of `key` (relative to the access point's prefix `ap_prefix`) on the
    /// distribution.
    pub fn url_of(&self, ap_prefix: &str, key: &str) -> String {
        format!("https://{}{}", self.domain, self.path_of(ap_prefix, key))
    }

    /// Problems with the fields, by field name under `delivery.cloudfront`.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Err(m) = check_domain(&self.domain) {
            p.push(("domain", m));
        } else if self.domain.bytes().any(|b| b.is_ascii_uppercase()) {
            // Browsers and CloudFront lowercase the host; the policy's resource must match.
            p.push(("domain", format!("{:?} must be lowercase", self.domain)));
        }
        let path_ok = |p: &String| {
            p.starts_with('/')
                && p.ends_with('/')
                && !p.contains("//")
                && p.len() <= 512
                && p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
                })
                && !p.split('/').any(|s| s == "." || s == "..")
        };
        if !self.path_prefix.as_ref().is_none_or(path_ok) {
            p.push((
                "path_prefix",
                "must start and end with / and hold only letters, digits, '-', '_', '.', '~' and '/' (no empty, '.' or '..' segments)".into(),
            ));
        }
        if let Err(e) = check_key_pair_id(&self.key_pair_id) {
            p.push(("key_pair_id", e.to_string()));
        }
        if let Some(cookie_domain) = &self.cookie_domain {
            let host = self.domain.split(':').next().unwrap_or_default();
            let bare = cookie_domain.strip_prefix('.').unwrap_or(cookie_domain);
            let covers = host == bare || host.ends_with(&format!(".{bare}"));
            if check_domain(bare).is_err() || bare.contains(':') || !bare.contains('.') || !covers {
                p.push((
                    "cookie_domain",
                    format!("must be a domain name (with a dot) that covers {host:?}, such as the distribution's parent domain"),
                ));
            }
        }
        p
    }
}

/// A DNS name (`d111111abcdef8.cloudfront.net`), optionally with a port (`localhost:8443`,
/// for a test origin): no scheme, path, user or wildcard.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("{domain:?}: the port must be 1-65535"));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() <= 253 && !host.is_empty() && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{domain:?} is not a domain name (write d111111abcdef8.cloudfront.net, without https:// or a path)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(domain: &str, path_prefix: &str, key_pair_id: &str) -> CloudFrontDelivery {
        CloudFrontDelivery {
            domain: domain.into(),
            path_prefix: Some(path_prefix.into()),
            key_pair_id: key_pair_id.into(),
            cookie_domain: None,
        }
    }

    #[test]
    fn fields_are_checked() {
        let ok = cf("d111111abcdef8.cloudfront.net", "/video/", "K2JCJMDEHXQW5F");
        assert!(ok.problems().is_empty());
        assert!(cf("localhost:8443", "/", "K1").problems().is_empty());
        let fields = |c: CloudFrontDelivery| -> Vec<&str> {
            c.problems().into_iter().map(|(f, _)| f).collect()
        };
        for bad_domain in [
            "https://d1.cloudfront.net",
            "d1.cloudfront.net/video",
            "*.example.com",
            "user@host",
            "host:0",
            "host:99999",
            "",
            "-a.example.com",
        ] {
            assert_eq!(
                fields(cf(bad_domain, "/", "K1")),
                ["domain"],
                "{bad_domain}"
            );
        }
        for bad_path in [
            "video/", "/video", "/a//b/", "/../", "/v*/", "/v?/", "/%2e/", "",
        ] {
            assert_eq!(
                fields(cf("d.net", bad_path, "K1")),
                ["path_prefix"],
                "{bad_path}"
            );
        }
        for bad_id in ["", "k-1", "K 1"] {
            assert_eq!(
                fields(cf("d.net", "/", bad_id)),
                ["key_pair_id"],
                "{bad_id}"
            );
        }
    }

    #[test]
    fn cookie_domains_cover_the_distribution() {
        let with = |domain: &str, cookie: &str| CloudFrontDelivery {
            cookie_domain: Some(cookie.into()),
            ..cf(domain, "/", "K1")
        };
        for ok in ["example.com", ".example.com", "media.example.com"] {
            assert!(with("media.example.com", ok).problems().is_empty(), "{ok}");
        }
        for bad in [
            "other.com",
            "ample.com",
            "com",
            "",
            "example.com:443",
            "a.media.example.com",
        ] {
            let fields: Vec<&str> = with("media.example.com", bad)
                .problems()
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            assert_eq!(fields, ["cookie_domain"], "{bad}");
        }
    }

    #[test]
    fn urls_encode_the_key_under_the_path_prefix() {
        let c = cf("d1.cloudfront.net", "/media/", "K1");
        assert_eq!(
            c.url_of("video/", "show 1/ep*1.m3u8"),
            "https://d1.cloudfront.net/media/show%201/ep%2A1.m3u8"
        );
        // Without a path_prefix, the access point's prefix (never the bucket's root).
        let root = CloudFrontDelivery {
            path_prefix: None,
            ..c
        };
        assert_eq!(
            root.url_of("video/", "a.ts"),
            "https://d1.cloudfront.net/video/a.ts"
        );
        assert_eq!(root.url_of("", "a.ts"), "https://d1.cloudfront.net/a.ts");
        assert_eq!(cf("D1.example.com", "/", "K1").problems().len(), 1);
    }
}
