//! The served access points: the in-memory snapshot every request reads ([`Catalog`]), how it
//! is filled from SQL and from declarative files (`apply`: `presignd apply -f`,
//! `access_points.file` at startup), and how every instance keeps it — and the revocations —
//! in step with the database (`sync`).

mod apply;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use apply::{AccessPointsFile, ApplyError, ApplySummary, apply, check_spec, load, read_file};

use crate::policy::CompiledAccessPoint;

/// An immutable snapshot of the served access points, by name. Reloads build a new one.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Arc<CompiledAccessPoint>>,
}

impl Catalog {
    /// Names are unique in the store; should two entries share one, the later wins.
    pub fn new(access_points: Vec<CompiledAccessPoint>) -> Catalog {
        let by_name = access_points
            .into_iter()
            .map(|ap| (ap.spec.name.clone(), Arc::new(ap)))
            .collect();
        Catalog { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CompiledAccessPoint>> {
        self.by_name.get(name)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledAccessPoint>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(name: &str) -> CompiledAccessPoint {
        let spec = serde_json::from_value(serde_json::json!({"name": name, "bucket": "bucket",
            "rules": [{"effect": "allow", "groups": ["*"], "operations": ["get"]}]}))
        .expect("spec");
        CompiledAccessPoint::compile(spec).expect("valid")
    }

    #[test]
    fn catalog_looks_up_and_iterates_by_name() {
        let aps = ["zeta", "alpha", "mid"]
            .iter()
            .map(|n| compiled(n))
            .collect();
        let catalog = Catalog::new(aps);
        assert_eq!(catalog.len(), 3);
        assert!(!catalog.is_empty());
        assert_eq!(catalog.get("mid").map(|ap| ap.name()), Some("mid"));
        assert!(catalog.get("nope").is_none());
        let names: Vec<&str> = catalog.iter().map(|ap| ap.name()).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        assert!(Catalog::default().is_empty());
    }
}
