//! `/readyz` warns when a served bucket's CORS (read back from a real radosgw with
//! GetBucketCors) does not let an access point's browser origins use presignd's URLs, and the
//! warning goes away once the rule `presignd bucket-cors` derives is in the bucket.

mod common;

use std::time::Duration;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use common::app::{Backend, Options, S3Endpoint, TestApp, ap};
use common::rgw::Rgw;
use serde_json::{Value, json};

const BUCKET: &str = "cors-check";
const ORIGIN: &str = "https://app.example.com";

fn web() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "web", "bucket": BUCKET, "prefix": "web/", "cors_origins": [ORIGIN],
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"]}]
    }))
}

/// Polls `/readyz` (always 200: a CORS gap breaks browsers, not presignd) until `done` holds
/// for its warnings; returns them.
async fn readyz_warnings_until(app: &TestApp, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..100 {
        let (status, body) = app.get(None, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        last = body["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz warnings never reached the expected state; last: {last:?}");
}

async fn put_cors(rgw: &Rgw, rules: Vec<CorsRule>) {
    rgw.sdk_client()
        .put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(rules))
                .build()
                .expect("cors configuration"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("put cors: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_warns_until_the_bucket_cors_covers_the_origins() {
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let mut opts = Options::new(Backend::Sqlite, vec![web()]);
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    opts.config(|c| c.s3.cors_check_interval_seconds = 1);
    let app = TestApp::spawn_with(opts).await;

    // 1. No CORS configuration on the bucket at all.
    let w = readyz_warnings_until(&app, |w| !w.is_empty()).await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "access point web: bucket {BUCKET}'s CORS does not cover its origins: {ORIGIN} may not GET"
        )),
        "{w:?}"
    );
    assert!(w[0].contains("presignd bucket-cors web --apply"), "{w:?}");

    // 2. A rule for downloads only: uploads from the browser would still fail.
    put_cors(
        &rgw,
        vec![
            CorsRule::builder()
                .allowed_origins(ORIGIN)
                .allowed_methods("GET")
                .allowed_methods("HEAD")
                .build()
                .expect("rule"),
        ],
    )
    .await;
    let w = readyz_warnings_until(&app, |w| w.iter().all(|w| !w.contains("may not GET"))).await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].ends_with(&format!(
            "{ORIGIN} may not PUT; {ORIGIN} may not POST; run `presignd bucket-cors web --apply`"
        )),
        "{w:?}"
    );

    // 3. The rule presignd derives for the access point: covered, the warning goes.
    let compiled = presignd::policy::CompiledAccessPoint::compile(web()).expect("compile");
    let derived = presignd::bucket::cors_rule(&compiled).expect("derived rule");
    let rule = CorsRule::builder()
        .id(&derived.id)
        .set_allowed_origins(Some(derived.allowed_origins))
        .set_allowed_methods(Some(derived.allowed_methods))
        .set_allowed_headers(Some(derived.allowed_headers))
        .set_expose_headers(Some(derived.expose_headers))
        .build()
        .expect("rule");
    put_cors(&rgw, vec![rule]).await;
    let w = readyz_warnings_until(&app, |w| w.is_empty()).await;
    assert!(w.is_empty());
    app.finish().await;
    drop(rgw);
}
