//! Download grants' storage against real SQLite and PostgreSQL: uses are counted exactly, a
//! grant serves no more once used up, expired or revoked, only its owner (or an admin, with
//! no owner given) revokes it, and two instances redeeming a single-use grant at once get
//! exactly one redemption between them.

mod common;

use common::app::Backend;
use common::postgres::{create_postgres_database, drop_postgres_database, with_database};
use presignd::grants::{self, Gone};
use presignd::store::{Redemption, Store, StoredGrant};

/// Two stores ("instances", each its own connection pool) on one fresh database.
struct Shared {
    a: Store,
    b: Store,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

async fn shared(backend: Backend) -> Shared {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, postgres) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("g.db").display()),
            None,
        ),
        Backend::Postgres => {
            let (admin, name) = create_postgres_database("presignd_grants").await;
            (with_database(&admin, &name), Some((admin, name)))
        }
    };
    let a = Store::connect(&url, 16).await.expect("connect a");
    a.migrate().await.expect("migrate");
    let b = Store::connect(&url, 16).await.expect("connect b");
    Shared {
        a,
        b,
        _dir: dir,
        postgres,
    }
}

impl Shared {
    async fn finish(self) {
        self.a.close().await;
        self.b.close().await;
        if let Some((admin, name)) = &self.postgres {
            drop_postgres_database(admin, name).await;
        }
    }
}

fn grant(id: &str, max_uses: u32, expires_at: i64) -> StoredGrant {
    StoredGrant {
        grant_id: id.into(),
        access_point: "downloads".into(),
        request_key: "report.pdf".into(),
        object_key: "files/report.pdf".into(),
        issuer: "https://idp.test/".into(),
        subject: "alice".into(),
        groups: vec!["premium".into()],
        mfa: true,
        response_content_disposition: Some("attachment; filename=\"report.pdf\"".into()),
        max_uses,
        uses: 0,
        created_at: 1_000,
        expires_at,
        revoked_at: None,
    }
}

async fn counts_expires_and_revokes(backend: Backend) {
    let s = shared(backend).await;
    let now = 2_000;
    let (token, digest) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g1", 2, 3_000), &digest)
        .await
        .expect("insert");

    // Two uses, from either instance, then gone; the stored row round-trips.
    let Redemption::Redeemed(first) = s.a.redeem_grant(&digest, now).await.expect("redeem") else {
        panic!("first use refused");
    };
    assert_eq!(
        first,
        StoredGrant {
            uses: 1,
            ..grant("g1", 2, 3_000)
        }
    );
    assert!(
        matches!(s.b.redeem_grant(&digest, now).await.expect("redeem"), Redemption::Redeemed(g) if g.uses == 2)
    );
    let Redemption::Gone(used) = s.a.redeem_grant(&digest, now).await.expect("redeem") else {
        panic!("a third use counted");
    };
    assert_eq!(
        (used.uses, grants::gone(&used, now)),
        (2, Some(Gone::UsedUp))
    );
    // A refund gives one use back (a redemption that issued nothing).
    s.a.refund_grant_use("g1").await.expect("refund");
    assert!(matches!(
        s.a.redeem_grant(&digest, now).await.expect("redeem"),
        Redemption::Redeemed(_)
    ));

    // Unknown tokens, expiry.
    assert_eq!(
        s.a.redeem_grant(&grants::token_sha256(&format!("{token}x")), now)
            .await
            .expect("redeem"),
        Redemption::Unknown
    );
    let (_, expiring) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g2", 5, 2_500), &expiring)
        .await
        .expect("insert");
    assert!(matches!(
        s.a.redeem_grant(&expiring, 2_499).await.expect("redeem"),
        Redemption::Redeemed(_)
    ));
    let Redemption::Gone(expired) = s.a.redeem_grant(&expiring, 2_500).await.expect("redeem")
    else {
        panic!("redeemed after expiry");
    };
    assert_eq!(grants::gone(&expired, 2_500), Some(Gone::Expired));

    // Revocation: not by another subject, by the owner, idempotent, then nothing redeems.
    let (_, revocable) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g3", 5, 9_000), &revocable)
        .await
        .expect("insert");
    assert_eq!(
        s.a.revoke_grant("g3", Some(("https://idp.test/", "mallory")), now)
            .await
            .expect("revoke"),
        None
    );
    assert_eq!(
        s.a.revoke_grant("g3", Some(("https://other.test/", "alice")), now)
            .await
            .expect("revoke"),
        None,
        "the same subject from another issuer is not the owner"
    );
    let revoked =
        s.b.revoke_grant("g3", Some(("https://idp.test/", "alice")), now)
            .await
            .expect("revoke");
    assert_eq!(revoked.and_then(|g| g.revoked_at), Some(now));
    let again =
        s.a.revoke_grant("g3", None, now + 10)
            .await
            .expect("revoke");
    assert_eq!(
        again.and_then(|g| g.revoked_at),
        Some(now),
        "the first revocation time stays"
    );
    let Redemption::Gone(g) = s.a.redeem_grant(&revocable, now).await.expect("redeem") else {
        panic!("redeemed after revocation");
    };
    assert_eq!(grants::gone(&g, now), Some(Gone::Revoked));
    assert_eq!(
        s.a.grant_by_token(&revocable)
            .await
            .expect("peek")
            .map(|g| g.uses),
        Some(0)
    );
    assert_eq!(
        s.a.revoke_grant("nope", None, now).await.expect("revoke"),
        None
    );
    s.finish().await;
}
on_both_backends!(grants_count_expire_and_revoke, counts_expires_and_revokes);

/// 50 concurrent redemptions of a single-use grant, half through each instance: exactly one
/// is counted. Then a grant of 7 uses under 50: exactly 7.
async fn concurrent_redemptions_count_exactly(backend: Backend) {
    let s = shared(backend).await;
    for (id, max_uses) in [("once", 1u32), ("seven", 7)] {
        let (_, digest) = grants::new_token().expect("token");
        s.a.insert_grant(&grant(id, max_uses, i64::MAX), &digest)
            .await
            .expect("insert");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let store = if i % 2 == 0 { s.a.clone() } else { s.b.clone() };
            let digest = digest.clone();
            tasks.spawn(async move { store.redeem_grant(&digest, 2_000).await.expect("redeem") });
        }
        let mut redeemed = 0;
        let mut gone = 0;
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Redemption::Redeemed(_) => redeemed += 1,
                Redemption::Gone(_) => gone += 1,
                Redemption::Unknown => panic!("the grant exists"),
            }
        }
        assert_eq!((redeemed, gone), (max_uses, 50 - max_uses), "{id}");
        let stored =
            s.b.grant_by_token(&digest)
                .await
                .expect("peek")
                .expect("grant");
        assert_eq!(stored.uses, max_uses);
    }
    s.finish().await;
}
on_both_backends!(
    single_use_grants_redeem_once_across_instances,
    concurrent_redemptions_count_exactly
);
