//! Micro-benchmarks of the presign hot path's pure steps (`cargo bench --bench micro`):
//! JWT verification per algorithm, policy evaluation over 100 access points × 20 rules, key
//! validation, and signing through the fast path next to aws-sdk-s3's presigner.
//! Results and the machine they ran on: docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use presignd::Principal;
use presignd::catalog::Catalog;
use presignd::config::S3Config;
use presignd::policy::{
    AccessPointSpec, CompiledAccessPoint, Decision, Encryption, Operation, Target, evaluate,
    validate_key,
};
use presignd::sign::{CachedCredentials, SignRequest, Signer};
use serde_json::json;

// The allocator the presignd binary ships with (src/main.rs): allocation costs are part of
// what is measured, so they must be the service's, not the system allocator's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture key")
}

fn jwt(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "iss": "https://idp.example", "aud": "presignd", "sub": "alice",
        "groups": ["users", "editors"], "iat": now, "exp": now + 3600,
    });
    let keys = [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa1.pem")).expect("rsa"),
            DecodingKey::from_rsa_pem(&fixture("rsa1.pub.pem")).expect("rsa"),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&fixture("ed25519.pem")).expect("ed25519"),
            DecodingKey::from_ed_pem(&fixture("ed25519.pub.pem")).expect("ed25519"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec.pem")).expect("ec"),
            DecodingKey::from_ec_pem(&fixture("ec.pub.pem")).expect("ec"),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (alg, enc, dec) in keys {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &enc).expect("sign");
        let mut validation = Validation::new(alg);
        validation.set_audience(&["presignd"]);
        validation.set_issuer(&["https://idp.example"]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &dec, &validation).expect("verifies");
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &dec, &validation)
            })
        });
    }
    group.finish();
}

/// 100 access points of 20 rules each: per-group allows on `${jwt:sub}` and shared globs,
/// extension globs, and denies, so an evaluation walks a realistic rule list.
fn catalog() -> Catalog {
    let aps = (0..100)
        .map(|i| {
            let mut rules = Vec::new();
            for j in 0..19 {
                rules.push(match j % 5 {
                    0 => json!({ "effect": "deny", "groups": [format!("suspended-{j}")], "operations": ["*"] }),
                    1 => json!({ "effect": "allow", "groups": [format!("team-{j}")], "operations": ["get"],
                                 "keys": [format!("shared/{j}/*"), format!("public/{j}/**/*.png")] }),
                    2 => json!({ "effect": "deny", "groups": ["*"], "operations": ["put"], "keys": [format!("locked/{j}/*")] }),
                    3 => json!({ "effect": "allow", "groups": [format!("team-{j}"), "editors"], "operations": ["put", "get"],
                                 "keys": [format!("${{jwt:sub}}/{j}/*")] }),
                    _ => json!({ "effect": "allow", "groups": ["moderators"], "operations": ["delete"], "keys": ["*"], "require_mfa": true }),
                });
            }
            // The rule that grants the benchmarked PUT comes last.
            rules.push(json!({ "effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/**"] }));
            let spec: AccessPointSpec = serde_json::from_value(json!({
                "name": format!("ap-{i:03}"),
                "bucket": format!("bucket-{}", i % 10),
                "prefix": format!("ap{i}/"),
                "rules": rules,
            }))
            .expect("spec");
            CompiledAccessPoint::compile(spec).expect("valid spec")
        })
        .collect();
    Catalog::new(aps)
}

fn policy(c: &mut Criterion) {
    let catalog = catalog();
    assert_eq!(catalog.len(), 100);
    let alice = Principal {
        sub: "alice".into(),
        iss: "https://idp.example".into(),
        groups: vec!["users".into(), "editors".into(), "team-3".into()],
        mfa: false,
        issued_at: None,
        expires_at: i64::MAX,
        jti: None,
    };
    let key = "alice/photos/2024/summer trip/IMG_0001.jpeg";
    let decide = |name: &str, op: Operation, key: &str| {
        let ap = catalog.get(name).expect("access point");
        evaluate(ap, &alice, op, key)
    };
    assert_eq!(decide("ap-057", Operation::Put, key), Decision::Allow);
    assert!(matches!(
        decide("ap-057", Operation::Delete, "bob/x"),
        Decision::Deny(_)
    ));
    let mut group = c.benchmark_group("policy");
    group.bench_function("lookup+evaluate allow (100 APs x 20 rules)", |b| {
        b.iter(|| decide(black_box("ap-057"), Operation::Put, black_box(key)))
    });
    group.bench_function("lookup+evaluate implicit deny (100 APs x 20 rules)", |b| {
        b.iter(|| {
            decide(
                black_box("ap-057"),
                Operation::Delete,
                black_box("bob/x.png"),
            )
        })
    });
    group.bench_function("validate_key", |b| {
        b.iter(|| validate_key(black_box("avatars/"), black_box(key)))
    });
    group.finish();
}

fn sign(c: &mut Criterion) {
    let cfg = S3Config {
        region: "eu-west-1".into(),
        ..S3Config::default()
    };
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "bench",
    );
    let signer = Signer::with_credentials(
        &cfg,
        CachedCredentials::new(SharedCredentialsProvider::new(creds)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target: Target = "acme-user-content".parse().expect("bucket");
    let none = BTreeMap::new();
    let metadata = BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]);
    let kms = Encryption::SseKms {
        kms_key_id: "alias/uploads".into(),
    };
    let get = SignRequest {
        operation: Operation::Get,
        target: &target,
        key: "avatars/alice/photos/2024/summer trip/IMG_0001.jpeg",
        expires_in: Duration::from_secs(300),
        now: SystemTime::now(),
        encryption: &Encryption::None,
        content_type: None,
        content_length: None,
        checksum_sha256: None,
        metadata: &none,
        response_content_disposition: None,
        response_content_type: None,
        record_id: "0190b4c2-1f2a-7c3d-8e4f-5a6b7c8d9e0f",
        create_only: false,
    };
    let put = SignRequest {
        operation: Operation::Put,
        encryption: &kms,
        content_type: Some("image/jpeg"),
        content_length: Some(2_345_678),
        metadata: &metadata,
        ..get.clone()
    };
    for (name, req) in [("GET", &get), ("PUT+SSE-KMS+CT", &put)] {
        // Warm the credential cache and check both paths agree before timing them.
        let sdk = rt.block_on(signer.presign_sdk(req)).expect("sdk");
        let fast = rt
            .block_on(signer.presign_fast(req))
            .expect("fast")
            .expect("fast path applies");
        assert_eq!(fast.url, sdk.url);
        let mut group = c.benchmark_group(format!("sign {name}"));
        group.bench_function("fast path (Signer::presign_fast, polled once)", |b| {
            b.iter(|| {
                signer
                    .presign_fast(black_box(req))
                    .now_or_never()
                    .expect("ready on first poll")
            })
        });
        group.bench_function("fast path (Signer::presign, block_on)", |b| {
            b.iter(|| rt.block_on(signer.presign(black_box(req))))
        });
        group.bench_function(
            "aws-sdk-s3 presigned() (Signer::presign_sdk, block_on)",
            |b| b.iter(|| rt.block_on(signer.presign_sdk(black_box(req)))),
        );
        group.finish();
    }
    c.bench_function("runtime block_on(ready) overhead", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }))
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = jwt, policy, sign
}
criterion_main!(micro);
