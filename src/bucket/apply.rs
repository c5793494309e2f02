//! `presignd bucket-cors --apply`: merges presignd's CORS rule for an access point into the
//! bucket's CORS configuration with aws-sdk-s3, keeping every unrelated rule.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkCorsRule};

use crate::bucket::{CorsRule, merge_cors_rules};
use crate::config::Config;
use crate::policy::{CompiledAccessPoint, Target};
use crate::sign::Signer;

pub async fn apply_cors(
    config: &Config,
    ap: &CompiledAccessPoint,
    rule: CorsRule,
) -> anyhow::Result<()> {
    let Target::Bucket(bucket) = &ap.target else {
        anyhow::bail!(
            "bucket CORS applies to buckets; {} targets an access point ARN",
            ap.spec.name
        );
    };
    let signer = Signer::new(&config.s3).await;
    let client = signer.s3_client();
    let existing = match client.get_bucket_cors().bucket(bucket).send().await {
        Ok(out) => out.cors_rules.unwrap_or_default(),
        // No CORS configuration yet.
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code())
                == Some("NoSuchCORSConfiguration") =>
        {
            Vec::new()
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                aws_sdk_s3::error::DisplayErrorContext(e).to_string()
            ));
        }
    };
    let ours = SdkCorsRule::builder()
        .id(&rule.id)
        .set_allowed_origins(Some(rule.allowed_origins.clone()))
        .set_allowed_methods(Some(rule.allowed_methods.clone()))
        .set_allowed_headers(Some(rule.allowed_headers.clone()))
        .set_expose_headers(Some(rule.expose_headers.clone()))
        .max_age_seconds(rule.max_age_seconds)
        .build()?;
    let merged = merge_cors_rules(&existing, |r| r.id(), ours, &rule.id);
    client
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(merged))
                .build()?,
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}
