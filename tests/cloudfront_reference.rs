//! presignd's CloudFront signed URLs and cookies next to the official signer,
//! `@aws-sdk/cloudfront-signer` (npm, run by `tests/cloudfront-signer/sign.mjs`), over 128
//! generated cases: RSA-2048 signatures are deterministic, so everything must be
//! byte-identical; ECDSA P-256 signatures are randomized, so everything but the signature must
//! be, and every signature (RSA too) must verify with `openssl` against the public key.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use presignd::cloudfront::{CloudFrontKey, CloudFrontKeys, Conditions, policy};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

const CASES: usize = 128;

struct Key {
    id: &'static str,
    pem: PathBuf,
    public: PathBuf,
    rsa: bool,
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (apt-get install -y openssl; scripts/ensure-test-tools)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two RSA-2048 and two ECDSA P-256 keys, in each PEM format openssl writes.
fn keys(dir: &Path) -> Vec<Key> {
    let made = [
        (
            "KRSAPKCS8",
            "rsa8.pem",
            true,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ][..],
        ),
        (
            "KRSAPKCS1",
            "rsa1.pem",
            true,
            &["genrsa", "-traditional", "-out"][..],
        ),
        (
            "KECSEC1",
            "ec1.pem",
            false,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ][..],
        ),
        (
            "KECPKCS8",
            "ec8.pem",
            false,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ][..],
        ),
    ];
    made.into_iter()
        .map(|(id, file, rsa, args)| {
            let pem = dir.join(file);
            let pem_s = pem.to_str().expect("utf-8 path");
            let mut args = args.to_vec();
            args.push(pem_s);
            if id == "KRSAPKCS1" {
                args.push("2048");
            }
            openssl(&args);
            let public = dir.join(format!("{file}.pub"));
            openssl(&[
                "pkey",
                "-in",
                pem_s,
                "-pubout",
                "-out",
                public.to_str().expect("utf-8"),
            ]);
            Key {
                id,
                pem,
                public,
                rsa,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    key: usize,
    cookies: bool,
    url: String,
    conditions: Conditions,
}

fn cases() -> Vec<Case> {
    // Keys as presignd accepts them (no control characters), minus `*`, which presignd
    // encodes as %2A where the official signer leaves a wildcard (see `policy::encode_path`).
    let key = "[a-zA-Z0-9 ._~!'()\\-+=&$@,;:#?%\\[\\]{}^|<>\"éü日本😀/]{1,40}"
        .prop_filter("no empty or dot segments", |k: &String| {
            k.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        });
    let strategy = (
        0..4usize,
        any::<bool>(),
        prop::sample::select(vec!["d111111abcdef8.cloudfront.net", "media.example.com"]),
        prop::sample::select(vec!["/", "/video/", "/a/b/"]),
        key,
        any::<bool>(),
        1_700_000_000i64..2_000_000_000,
        prop::option::of(1..86_400i64),
        prop::option::of(any::<u32>()),
    )
        .prop_map(
            |(key_i, cookies, domain, prefix, key, record_id, expires, start, ip)| {
                let mut url = format!("https://{domain}{prefix}{}", policy::encode_path(&key));
                if cookies {
                    url.push('*');
                } else if record_id {
                    url.push_str("?x-presignd-id=0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
                }
                Case {
                    key: key_i,
                    cookies,
                    url,
                    conditions: Conditions {
                        expires,
                        not_before: start.map(|s| expires - s),
                        source_ip: ip.map(|ip| Ipv4Addr::from(ip).into()),
                    },
                }
            },
        );
    let mut runner = TestRunner::deterministic();
    (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).expect("case").current())
        .collect()
}

fn reference(cases: &[Case], keys: &[Key]) -> Vec<Value> {
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            let key = &keys[c.key];
            let mut v = json!({
                "kind": if c.cookies { "cookies" } else { "url" },
                "url": c.url,
                "keyPairId": key.id,
                "keyFile": key.pem,
                "expires": c.conditions.expires,
                "notBefore": c.conditions.not_before,
                "ip": c.conditions.source_ip.map(|ip| ip.to_string()),
            });
            if c.cookies && c.conditions.is_canned() {
                v["policy"] = json!(policy::policy_json(&c.url, &c.conditions));
            }
            v
        })
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudfront-signer");
    assert!(
        dir.join("node_modules/@aws-sdk/cloudfront-signer").exists(),
        "the reference signer is missing: (cd tests/cloudfront-signer && npm ci) (scripts/test does it: scripts/ensure-test-tools)"
    );
    let mut child = Command::new("node")
        .arg("sign.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let stdin = child.stdin.take().expect("stdin");
    serde_json::to_writer(stdin, &input).expect("write cases");
    let out = child.wait_with_output().expect("node finishes");
    assert!(
        out.status.success(),
        "sign.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON results")
}

/// `openssl dgst -sha256 -verify`: does `signature` (CloudFront base64) sign `policy`?
fn verifies(dir: &Path, key: &Key, policy: &str, signature: &str, n: usize) -> bool {
    let sig = common::cloudfront::unbase64(signature).expect("base64 signature");
    let (sig_file, data_file) = (dir.join(format!("{n}.sig")), dir.join(format!("{n}.txt")));
    std::fs::write(&sig_file, sig).expect("write");
    std::fs::write(&data_file, policy).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key.public)
        .arg("-signature")
        .arg(&sig_file)
        .arg(&data_file)
        .output()
        .expect("openssl runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

/// `url` split at its signature: (everything before, the signature, everything after).
fn split_signature(url: &str) -> (&str, &str, &str) {
    let start = url.find("Signature=").expect("a signature") + "Signature=".len();
    let end = url[start..].find('&').map_or(url.len(), |i| start + i);
    (&url[..start], &url[start..end], &url[end..])
}

#[test]
fn urls_and_cookies_match_the_official_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let signer =
        CloudFrontKeys::new(keys.iter().map(|k| {
            CloudFrontKey::load(k.id, &k.pem).unwrap_or_else(|e| panic!("{}: {e}", k.id))
        }));
    let cases = cases();
    let expected = reference(&cases, &keys);
    assert_eq!(expected.len(), CASES);
    let (mut urls, mut cookies, mut custom, mut ecdsa) = (0, 0, 0, 0);
    for (n, (case, want)) in cases.iter().zip(&expected).enumerate() {
        let key = &keys[case.key];
        ecdsa += usize::from(!key.rsa);
        custom += usize::from(!case.conditions.is_canned());
        let (policy, signature) = if case.cookies {
            cookies += 1;
            let got = signer
                .sign_cookies(key.id, &case.url, &case.conditions)
                .expect("signs");
            let want = &want["cookies"];
            assert_eq!(want["CloudFront-Key-Pair-Id"], got.key_pair_id, "case {n}");
            assert_eq!(
                want["CloudFront-Policy"], got.encoded_policy,
                "case {n}: {case:?}"
            );
            assert_eq!(want["CloudFront-Hash-Algorithm"], "SHA256", "case {n}");
            assert!(want.get("CloudFront-Expires").is_none(), "case {n}");
            if case.conditions.is_canned() {
                // The statement the official signer would build for this expiry alone.
                assert_eq!(expected[n]["statement"], got.policy, "case {n}");
            }
            if key.rsa {
                assert_eq!(want["CloudFront-Signature"], got.signature, "case {n}");
            }
            (got.policy, got.signature)
        } else {
            urls += 1;
            let got = signer
                .sign_url(key.id, &case.url, &case.conditions)
                .expect("signs");
            let want = want["url"].as_str().expect("a url");
            if key.rsa {
                assert_eq!(want, got.url, "case {n}: {case:?}");
            } else {
                let (w, g) = (split_signature(want), split_signature(&got.url));
                assert_eq!((w.0, w.2), (g.0, g.2), "case {n}: {case:?}");
                assert_eq!(g.1, got.signature);
            }
            (got.policy, got.signature)
        };
        assert!(
            verifies(dir.path(), key, &policy, &signature, n),
            "case {n}: openssl does not verify the signature: {case:?}"
        );
    }
    // Every kind of case occurred.
    assert!(
        urls > 30 && cookies > 30 && custom > 30 && ecdsa > 30,
        "{urls} {cookies} {custom} {ecdsa}"
    );
    // And the check can fail: a changed policy does not verify.
    let key = &keys[0];
    let c = &cases[0];
    let signed = signer
        .sign_url(key.id, "https://d/a", &c.conditions)
        .expect("signs");
    let forged = signed.policy.replace("https://d/a", "https://d/b");
    assert!(!verifies(
        dir.path(),
        key,
        &forged,
        &signed.signature,
        CASES
    ));
}

#[test]
fn keys_cloudfront_cannot_use_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().expect("utf-8").to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:3072",
        "-out",
        &s(&p("rsa3072.pem")),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        &s(&p("p384.pem")),
    ]);
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", &s(&p("ed.pem"))]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &s(&p("ok.pem")),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &s(&p("ok.pem")),
        "-pubout",
        "-out",
        &s(&p("ok.pub")),
    ]);
    for (file, said) in [
        ("rsa3072.pem", "RSA-3072"),
        ("p384.pem", "P-256"),
        ("ed.pem", "P-256"),
        ("ok.pub", "not a PEM private key"),
        ("missing.pem", "cannot read"),
    ] {
        let err = CloudFrontKey::load("K1", &p(file))
            .expect_err(file)
            .to_string();
        assert!(err.contains(said), "{file}: {err}");
    }
    let ok = CloudFrontKey::load("K1", &p("ok.pem")).expect("P-256 loads");
    assert_eq!(ok.kind(), "ECDSA P-256");
    for bad in ["", "k-1", "K 1", &"K".repeat(65)] {
        assert!(CloudFrontKey::load(bad, &p("ok.pem")).is_err(), "{bad:?}");
    }
}
