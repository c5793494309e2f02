use super::*;

#[test]
fn numbers_and_dates_are_written_as_fmt_would() {
    for n in [0, 7, 10, 99, 1_048_576, u64::MAX] {
        let mut s = String::new();
        push_u64(&mut s, n);
        assert_eq!(s, n.to_string());
    }
    let t = time::macros::datetime!(2026-01-02 03:04:05 UTC);
    assert_eq!(amz_date(t), "20260102T030405Z");
    let t = time::macros::datetime!(0999-12-31 23:59:59 UTC);
    assert_eq!(amz_date(t), "09991231T235959Z");
}

#[test]
fn encoding_matches_rfc3986_unreserved() {
    let mut s = String::new();
    percent_encode_into(&mut s, "a b/c+d=e%f~g.h_i-j\u{e9}", true);
    assert_eq!(s, "a%20b/c%2Bd%3De%25f~g.h_i-j%C3%A9");
    s.clear();
    percent_encode_into(&mut s, "a/b", false);
    assert_eq!(s, "a%2Fb");
}

#[test]
fn aws_partition_regions() {
    for r in ["us-east-1", "eu-central-2", "ap-southeast-4", "af-south-1"] {
        assert!(is_aws_partition_region(r), "{r}");
    }
    for r in [
        "us-gov-west-1",
        "cn-north-1",
        "us-iso-east-1",
        "aws-global",
        "local",
        "us-east-",
    ] {
        assert!(!is_aws_partition_region(r), "{r}");
    }
}

#[test]
fn endpoints_the_fast_path_takes_and_leaves() {
    let cfg = |ep: &str| S3Config {
        endpoint: Some(ep.into()),
        ..S3Config::default()
    };
    let f = FastSigner::new(&cfg("https://minio.example:443/")).expect("fast");
    assert_eq!(
        (f.authority.as_str(), f.host_header.as_str(), f.ip_host),
        ("minio.example:443", "minio.example", false)
    );
    let f = FastSigner::new(&cfg("http://127.0.0.1:9000")).expect("fast");
    assert_eq!(
        (f.authority.as_str(), f.host_header.as_str(), f.ip_host),
        ("127.0.0.1:9000", "127.0.0.1:9000", true)
    );
    for ep in [
        "https://minio.example/s3",
        "ftp://minio.example",
        "https://user@minio.example",
        "https://[::1]:9000",
        "https://minio.example:",
    ] {
        assert!(FastSigner::new(&cfg(ep)).is_none(), "{ep}");
    }
}

#[test]
fn the_signing_key_is_derived_once_per_credentials_and_day() {
    let f = FastSigner::new(&S3Config::default()).expect("fast");
    let creds = |secret: &str, token: Option<&str>| {
        Credentials::new("AK", secret, token.map(str::to_string), None, "t")
    };
    let day = *b"20260101";
    let first = f.signing_key(&creds("s1", None), day);
    assert!(matches!(first, KeyRef::Fresh(_)));
    let again = f.signing_key(&creds("s1", None), day);
    assert!(matches!(again, KeyRef::Cached(_)), "a hit");
    assert!(std::ptr::eq(&*first, &*again), "the same key");
    assert_eq!(first.scope, "20260101/us-east-1/s3/aws4_request");
    assert_eq!(
        first.credential_param,
        "AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    );
    // A new day, a rotated secret or a new session token derive a new key.
    for (c, d) in [
        (creds("s1", None), *b"20260102"),
        (creds("s2", None), *b"20260102"),
        (creds("s2", Some("t+1")), *b"20260102"),
    ] {
        let k = f.signing_key(&c, d);
        assert!(matches!(k, KeyRef::Fresh(_)));
        assert!(matches!(f.signing_key(&c, d), KeyRef::Cached(_)));
    }
    assert_eq!(
        f.signing_key(&creds("s2", Some("t+1")), *b"20260102")
            .token_param
            .as_deref(),
        Some("t%2B1")
    );
}
