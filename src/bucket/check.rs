//! Whether each served bucket's CORS lets an access point's browser origins use the URLs
//! presignd issues. Checked in the background (GetBucketCors once per bucket) and reported as
//! warnings on `/readyz`: a gap breaks browsers, not presignd, so it never makes it unready.

use std::collections::BTreeMap;

use aws_sdk_s3::error::DisplayErrorContext;

use crate::bucket::{BucketCorsRule, cors_gaps, cors_rule};
use crate::policy::Target;
use crate::state::AppState;

/// One pass over the catalog: a warning per access point whose bucket's CORS falls short, or
/// whose bucket's CORS could not be read.
pub async fn cors_warnings(state: &AppState) -> Vec<String> {
    let catalog = state.catalog();
    let mut by_bucket: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for ap in catalog.iter() {
        // An ARN target's bucket CORS is the underlying bucket's, which presignd cannot name.
        if let (Target::Bucket(bucket), Some(needed)) = (&ap.target, cors_rule(ap)) {
            by_bucket
                .entry(bucket.as_str())
                .or_default()
                .push((ap.name(), needed));
        }
    }
    let mut warnings = Vec::new();
    for (bucket, needs) in by_bucket {
        let rules = match bucket_cors(state, bucket).await {
            Ok(rules) => rules,
            Err(e) => {
                for (name, _) in &needs {
                    warnings.push(format!(
                        "access point {name}: cannot read bucket {bucket}'s CORS configuration ({e})"
                    ));
                }
                continue;
            }
        };
        for (name, needed) in needs {
            let gaps = cors_gaps(&needed, &rules);
            if gaps.is_empty() {
                continue;
            }
            let listed: Vec<String> = gaps.iter().map(ToString::to_string).collect();
            warnings.push(format!(
                "access point {name}: bucket {bucket}'s CORS does not cover its origins: {}; run `presignd bucket-cors {name} --apply`",
                listed.join("; ")
            ));
        }
    }
    warnings
}

async fn bucket_cors(state: &AppState, bucket: &str) -> Result<Vec<BucketCorsRule>, String> {
    let client = state.signer().s3_client();
    match client.get_bucket_cors().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .cors_rules()
            .iter()
            .map(|r| BucketCorsRule {
                allowed_origins: r.allowed_origins().to_vec(),
                allowed_methods: r.allowed_methods().to_vec(),
                allowed_headers: r.allowed_headers().to_vec(),
            })
            .collect()),
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code())
                == Some("NoSuchCORSConfiguration") =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(DisplayErrorContext(e).to_string()),
    }
}

/// Re-checks every `every` until aborted; logs when the set of warnings changes.
pub async fn run(state: AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let warnings = cors_warnings(&state).await;
        if *state.bucket_warnings() != warnings {
            for w in &warnings {
                tracing::warn!(warning = %w, "bucket CORS check");
            }
            if warnings.is_empty() {
                tracing::info!("bucket CORS check: every access point's origins are covered");
            }
            state.set_bucket_warnings(warnings);
        }
    }
}
