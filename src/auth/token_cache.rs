//! Verified-token cache: RS256/ES256/EdDSA signature checks are paid once per token, not once
//! per request.
//!
//! Keyed by the SHA-256 of the raw token (the token itself is never stored), so a token with
//! any byte changed — a tampered signature included — is a different key and is verified in
//! full. Only successful verifications are stored. An entry is usable exactly while the
//! verifier would accept the token (`nbf − leeway ≤ now ≤ exp + leeway`, the comparisons
//! `jsonwebtoken` makes) and only against the key sets it was verified with: a JWKS change
//! bumps the epoch and every older entry misses. Revocations are not the cache's business:
//! they are checked after authentication on every request, hit or miss.
//!
//! Sharded `std::sync::Mutex<HashMap>`s, each lock held for one map operation (never across
//! an await). Bounded: a full shard drops stale entries, then the one expiring soonest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::Principal;

/// SHA-256 of the raw token.
pub(crate) type TokenDigest = [u8; 32];

const MAX_SHARDS: usize = 16;

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// One verified token.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub principal: Arc<Principal>,
    /// First Unix second the verifier accepts the token: `nbf − leeway` (`i64::MIN` without
    /// `nbf`).
    pub valid_from: i64,
    /// Last Unix second the verifier accepts the token: `exp + leeway`.
    pub valid_until: i64,
    /// The key-set epoch the signature was checked under.
    pub epoch: u64,
}

impl Entry {
    fn usable(&self, now: i64, epoch: u64) -> bool {
        self.epoch == epoch && self.valid_from <= now && now <= self.valid_until
    }
}

pub(crate) struct TokenCache {
    shards: Box<[Mutex<HashMap<TokenDigest, Entry>>]>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache of at most `entries` tokens; `None` for 0 (caching disabled).
    pub fn new(entries: usize) -> Option<TokenCache> {
        if entries == 0 {
            return None;
        }
        let shards = entries.min(MAX_SHARDS);
        Some(TokenCache {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            // Rounded down: the total never exceeds `entries`.
            per_shard: entries / shards,
        })
    }

    fn shard(&self, key: &TokenDigest) -> MutexGuard<'_, HashMap<TokenDigest, Entry>> {
        let i = usize::from(key[0]) % self.shards.len();
        // A panic while holding the lock cannot leave a map half-updated in a way that
        // matters here (each operation is one insert or remove): keep using it.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The principal of a verified token still acceptable at `now` under key-set `epoch`. A
    /// stale entry is dropped.
    pub fn get(&self, key: &TokenDigest, now: i64, epoch: u64) -> Option<Arc<Principal>> {
        let mut shard = self.shard(key);
        let entry = shard.get(key)?;
        if entry.usable(now, epoch) {
            return Some(Arc::clone(&entry.principal));
        }
        shard.remove(key);
        None
    }

    /// Stores a verified token; a full shard first drops entries unusable at `now`, then the
    /// one expiring soonest.
    pub fn insert(&self, key: TokenDigest, entry: Entry, now: i64) {
        let epoch = entry.epoch;
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.usable(now, epoch));
            if shard.len() >= self.per_shard
                && let Some(soonest) = shard
                    .iter()
                    .min_by_key(|(_, e)| e.valid_until)
                    .map(|(k, _)| *k)
            {
                shard.remove(&soonest);
            }
        }
        shard.insert(key, entry);
    }

    /// Entries held, usable or not.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Arc<Principal> {
        Arc::new(Principal {
            sub: sub.into(),
            iss: "https://idp.example/".into(),
            groups: vec!["users".into()],
            mfa: false,
            issued_at: Some(1_000),
            expires_at: 2_000,
            jti: None,
        })
    }

    fn entry(sub: &str, valid_from: i64, valid_until: i64, epoch: u64) -> Entry {
        Entry {
            principal: principal(sub),
            valid_from,
            valid_until,
            epoch,
        }
    }

    #[test]
    fn digest_is_sha256_of_the_raw_token() {
        assert_eq!(
            hex::encode(digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(digest("a.b.c"), digest("a.b.d"));
    }

    #[test]
    fn usable_exactly_within_its_window() {
        let cache = TokenCache::new(10).expect("enabled");
        let key = digest("t");
        cache.insert(key, entry("alice", 100, 200, 1), 150);
        assert_eq!(
            cache.get(&key, 100, 1).map(|p| p.sub.clone()),
            Some("alice".into())
        );
        assert!(cache.get(&key, 200, 1).is_some(), "the last second is in");
        assert!(
            cache.get(&key, 201, 1).is_none(),
            "one second past exp + leeway"
        );
        assert_eq!(cache.len(), 0, "the stale entry was dropped");

        cache.insert(key, entry("alice", 100, 200, 1), 150);
        assert!(cache.get(&key, 99, 1).is_none(), "before nbf − leeway");
        cache.insert(key, entry("alice", 100, 200, 1), 150);
        assert!(cache.get(&key, 150, 2).is_none(), "another key-set epoch");
        assert!(cache.get(&digest("other"), 150, 1).is_none());
    }

    #[test]
    fn zero_disables() {
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn never_holds_more_than_its_bound() {
        for bound in [1, 7, 16, 17, 100, 1_000] {
            let cache = TokenCache::new(bound).expect("enabled");
            for i in 0..3 * bound + 50 {
                cache.insert(
                    digest(&i.to_string()),
                    entry("u", 0, 1_000 + i as i64, 1),
                    10,
                );
                assert!(
                    cache.len() <= bound,
                    "bound {bound}: {} entries",
                    cache.len()
                );
            }
            assert!(cache.len() >= bound / 2, "bound {bound}: the cache is used");
        }
    }

    #[test]
    fn a_full_shard_drops_stale_entries_then_the_soonest_to_expire() {
        // One shard of three (`new(3)` would make three shards of one).
        let cache1 = TokenCache {
            shards: vec![Mutex::new(HashMap::new())].into_boxed_slice(),
            per_shard: 3,
        };
        let (a, b, c, d) = (digest("a"), digest("b"), digest("c"), digest("d"));
        cache1.insert(a, entry("a", 0, 500, 1), 10);
        cache1.insert(b, entry("b", 0, 50, 1), 10);
        cache1.insert(c, entry("c", 0, 900, 1), 10);
        // At 60, b is stale: it goes, and a stays.
        cache1.insert(d, entry("d", 0, 800, 1), 60);
        assert!(cache1.get(&b, 60, 1).is_none());
        assert!(cache1.get(&a, 60, 1).is_some());
        // Nothing stale: the soonest to expire (a) goes.
        cache1.insert(b, entry("b", 0, 700, 1), 60);
        assert!(cache1.get(&a, 60, 1).is_none());
        for k in [b, c, d] {
            assert!(cache1.get(&k, 60, 1).is_some());
        }
        assert_eq!(cache1.len(), 3);
    }
}
