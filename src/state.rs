//! The one `Clone` application state shared by every request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::AuditSink;
use crate::auth::Verifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Catalog;
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
    audit: Arc<dyn AuditSink>,
    store: Store,
    instance: String,
    openapi_json: axum::body::Bytes,
    metrics: Arc<Metrics>,
}

pub struct Parts {
    pub config: Config,
    pub verifier: Verifier,
    pub catalog: Catalog,
    pub signer: Signer,
    pub audit: Arc<dyn AuditSink>,
    pub store: Store,
    pub instance: String,
    pub openapi_json: axum::body::Bytes,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(p: Parts) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                config: p.config,
                verifier: p.verifier,
                catalog: ArcSwap::from_pointee(p.catalog),
                signer: p.signer,
                audit: p.audit,
                store: p.store,
                instance: p.instance,
                openapi_json: p.openapi_json,
                metrics: p.metrics,
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
    pub fn audit(&self) -> &dyn AuditSink {
        self.inner.audit.as_ref()
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
    pub fn openapi_json(&self) -> axum::body::Bytes {
        self.inner.openapi_json.clone()
    }
}
