//! The one `Clone` application state shared by every request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::AuditSink;
use crate::auth::Verifier;
use crate::auth::revocations::Revocations;
use crate::catalog::Catalog;
use crate::cloudfront::CloudFrontKeys;
use crate::config::Config;
use crate::limits::{Limiter, LocalLimiter, RefusalLimiter};
use crate::metrics::Metrics;
use crate::sign::Signer;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    verifier: Verifier,
    /// Access points in memory: the hot path never reads SQL.
    catalog: ArcSwap<Catalog>,
    signer: Signer,
    /// CloudFront signing keys (`[[cloudfront.keys]]`), by key pair id.
    cloudfront: CloudFrontKeys,
    audit: Arc<dyn AuditSink>,
    store: Store,
    instance: String,
    openapi_json: axum::body::Bytes,
    metrics: Arc<Metrics>,
    limiter: Limiter,
    /// Revoked tokens in memory: the verify path never reads SQL.
    revocations: Arc<Revocations>,
    /// Refused callers past their limit: counted into summaries, not recorded one by one.
    refusals: Arc<RefusalLimiter>,
    /// Download grant redemptions per source address (`grants.redemptions_per_minute`).
    redemptions: Arc<LocalLimiter>,
    /// Catalog reloads run one at a time, so a slow one never replaces a newer catalog.
    catalog_reload: Arc<tokio::sync::Mutex<()>>,
    /// The latest bucket CORS check's warnings (`crate::bucket_check`), shown on `/readyz`.
    bucket_warnings: Arc<ArcSwap<Vec<String>>>,
}

pub struct Parts {
    pub config: Config,
    pub verifier: Verifier,
    pub catalog: Catalog,
    pub signer: Signer,
    pub cloudfront: CloudFrontKeys,
    pub audit: Arc<dyn AuditSink>,
    pub store: Store,
    pub instance: String,
    pub openapi_json: axum::body::Bytes,
    pub metrics: Arc<Metrics>,
    pub limiter: Limiter,
    pub revocations: Arc<Revocations>,
}

impl AppState {
    pub fn new(p: Parts) -> AppState {
        let refusals = Arc::new(RefusalLimiter::new(crate::limits::refusal_quota(
            &p.config.limits,
        )));
        AppState {
            inner: Arc::new(Inner {
                config: p.config,
                verifier: p.verifier,
                catalog: ArcSwap::from_pointee(p.catalog),
                signer: p.signer,
                cloudfront: p.cloudfront,
                audit: p.audit,
                store: p.store,
                instance: p.instance,
                openapi_json: p.openapi_json,
                metrics: p.metrics,
                limiter: p.limiter,
                revocations: p.revocations,
                refusals,
                redemptions: Arc::new(LocalLimiter::default()),
                catalog_reload: Arc::new(tokio::sync::Mutex::new(())),
                bucket_warnings: Arc::new(ArcSwap::from_pointee(Vec::new())),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.load_full()
    }
    pub fn replace_catalog(&self, catalog: Catalog) {
        self.inner.catalog.store(Arc::new(catalog));
    }
    pub fn signer(&self) -> &Signer {
        &self.inner.signer
    }
    pub fn cloudfront(&self) -> &CloudFrontKeys {
        &self.inner.cloudfront
    }
    pub fn audit(&self) -> &dyn AuditSink {
        self.inner.audit.as_ref()
    }
    /// The same state with another audit sink (benchmarks compare sinks on one app).
    pub fn with_audit(&self, audit: Arc<dyn AuditSink>) -> AppState {
        let i = &self.inner;
        AppState {
            inner: Arc::new(Inner {
                config: i.config.clone(),
                verifier: i.verifier.clone(),
                catalog: ArcSwap::new(i.catalog.load_full()),
                signer: i.signer.clone(),
                cloudfront: i.cloudfront.clone(),
                audit,
                store: i.store.clone(),
                instance: i.instance.clone(),
                openapi_json: i.openapi_json.clone(),
                metrics: Arc::clone(&i.metrics),
                limiter: i.limiter.clone(),
                revocations: Arc::clone(&i.revocations),
                refusals: Arc::clone(&i.refusals),
                redemptions: Arc::clone(&i.redemptions),
                catalog_reload: Arc::clone(&i.catalog_reload),
                bucket_warnings: Arc::clone(&i.bucket_warnings),
            }),
        }
    }
    pub fn refusals(&self) -> &RefusalLimiter {
        &self.inner.refusals
    }
    pub fn redemptions(&self) -> &LocalLimiter {
        &self.inner.redemptions
    }
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }
    pub fn openapi_json(&self) -> axum::body::Bytes {
        self.inner.openapi_json.clone()
    }
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }
    pub fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }
    pub fn bucket_warnings(&self) -> Arc<Vec<String>> {
        self.inner.bucket_warnings.load_full()
    }
    pub fn set_bucket_warnings(&self, warnings: Vec<String>) {
        self.inner.bucket_warnings.store(Arc::new(warnings));
    }
    /// Held while a catalog is loaded and swapped in (see `crate::sync`).
    pub fn catalog_reload_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.catalog_reload
    }
}
