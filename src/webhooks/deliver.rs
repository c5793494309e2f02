//! Webhook I/O: which endpoints an event goes to ([`deliveries_for`]), and the dispatcher
//! every instance runs ([`run_dispatcher`]): claim due deliveries, sign and POST each, forget
//! it on 2xx, else retry with backoff until `webhook_delivery.retry_for_seconds` has passed,
//! then dead-letter it.
//!
//! Requests go through a resolver that drops every non-public address (unless the endpoint
//! sets `allow_private_network`), so a host name that resolves — or is re-pointed — to
//! loopback, a private network or a cloud metadata address gets nothing; redirects are not
//! followed and proxies from the environment are not used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::ExposeSecret;

use super::{Event, EventType, SigningKey, backoff, destination_problem, is_public};
use crate::config::WebhookConfig;
use crate::state::AppState;
use crate::store::{NewDelivery, StoreError, StoredDelivery};

/// Deliveries one round claims at most (the next round takes the rest).
const BATCH: u32 = 50;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One delivery per endpoint that wants `type_` events of `access_point`.
pub fn deliveries_for(
    hooks: &[WebhookConfig],
    type_: EventType,
    access_point: &str,
    data: &serde_json::Value,
) -> Vec<NewDelivery> {
    let event = Event {
        type_,
        timestamp: time::OffsetDateTime::now_utc(),
        data: data.clone(),
    };
    let Ok(payload) = serde_json::to_string(&event) else {
        return Vec::new();
    };
    hooks
        .iter()
        .filter(|h| h.events.contains(&type_))
        .filter(|h| h.access_points.is_empty() || h.access_points.iter().any(|a| a == access_point))
        .map(|h| NewDelivery {
            delivery_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            endpoint: h.name.clone(),
            event_type: type_.as_str().to_string(),
            payload: payload.clone(),
            created_at_ms: now_ms(),
        })
        .collect()
}

/// Resolves names to their public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The two HTTP clients: public destinations only, and any (`allow_private_network`).
pub struct Clients {
    public: reqwest::Client,
    any: reqwest::Client,
}

impl Clients {
    pub fn new(timeout: Duration) -> Result<Clients, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(concat!("presignd/", env!("CARGO_PKG_VERSION"), " webhooks"))
        };
        Ok(Clients {
            public: builder().dns_resolver(Arc::new(PublicOnly)).build()?,
            any: builder().build()?,
        })
    }
}

/// Runs until the task is aborted (at shutdown).
pub async fn run_dispatcher(state: AppState) {
    let cfg = state.config().webhook_delivery.clone();
    let clients = match Clients::new(Duration::from_millis(cfg.timeout_ms)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; no webhooks will be delivered");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        // Without endpoints nothing is polled (queued deliveries wait for the configuration
        // to name their endpoint again).
        if state.config().webhooks.is_empty() {
            continue;
        }
        match deliver_due(&state, &clients).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deliveries = n, "webhook deliveries attempted"),
            Err(e) => tracing::warn!(error = %e, "webhook dispatch failed; retrying"),
        }
        // The dead-letter gauge, about every 30 s.
        let every = (30_000 / cfg.poll_interval_ms.max(1)).max(1);
        if round.is_multiple_of(every)
            && let Ok(n) = state.store().count_dead_letters().await
        {
            state.metrics().webhook_dead_letters.set(n);
        }
        round = round.wrapping_add(1);
    }
}

/// One round: claims the deliveries due and attempts each (concurrently). Returns how many.
pub async fn deliver_due(state: &AppState, clients: &Clients) -> Result<usize, StoreError> {
    let cfg = &state.config().webhook_delivery;
    let now = now_ms();
    let hold = i64::try_from(cfg.timeout_ms.saturating_mul(2)).unwrap_or(i64::MAX) + 5_000;
    let due = state
        .store()
        .claim_deliveries(now, now.saturating_add(hold), BATCH)
        .await?;
    let n = due.len();
    futures_util::future::join_all(due.into_iter().map(|d| attempt(state, clients, d))).await;
    Ok(n)
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Failed { error: String, status: Option<u16> },
}

async fn attempt(state: &AppState, clients: &Clients, d: StoredDelivery) {
    let config = state.config();
    let endpoint = config.webhooks.iter().find(|h| h.name == d.endpoint);
    let outcome = match endpoint {
        None => Attempt::Failed {
            error: "no webhook with this name is configured any more".into(),
            status: None,
        },
        Some(h) => send(clients, h, &d).await,
    };
    let store = state.store();
    let label = |outcome: &str| {
        state
            .metrics()
            .webhook_deliveries_total
            .with_label_values(&[d.endpoint.as_str(), outcome])
            .inc();
    };
    let result = match outcome {
        Attempt::Delivered => {
            label("delivered");
            store.delivered(&d.delivery_id).await
        }
        Attempt::Failed { error, status } => {
            let cfg = &config.webhook_delivery;
            let attempts = d.attempts.saturating_add(1);
            let now = now_ms();
            let retry_for =
                i64::try_from(cfg.retry_for_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            let delay = backoff(
                u32::try_from(attempts).unwrap_or(u32::MAX),
                Duration::from_millis(cfg.initial_backoff_ms),
                Duration::from_millis(cfg.max_backoff_ms),
                rand::random_range(0.5..=1.0),
            );
            let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            // An endpoint missing from this instance's configuration may be on its way (a
            // rolling change): retried like any failure.
            let dead = next > d.created_at_ms.saturating_add(retry_for);
            label(if dead { "dead" } else { "failed" });
            if dead {
                tracing::warn!(delivery_id = %d.delivery_id, endpoint = %d.endpoint, %error, attempts, "webhook delivery dead-lettered");
            } else {
                tracing::info!(delivery_id = %d.delivery_id, endpoint = %d.endpoint, %error, attempts, "webhook delivery failed; retrying");
            }
            store
                .attempt_failed(
                    &d.delivery_id,
                    attempts,
                    // A dead letter keeps when its last attempt failed.
                    if dead { now } else { next },
                    dead,
                    &error,
                    status.map(i32::from),
                )
                .await
        }
    };
    if let Err(e) = result {
        // The claim lapses and another round attempts it again (at least once).
        tracing::warn!(delivery_id = %d.delivery_id, error = %e, "cannot record a webhook attempt");
    }
}

/// Signs and POSTs one delivery: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
async fn send(clients: &Clients, h: &WebhookConfig, d: &StoredDelivery) -> Attempt {
    if let Some(problem) = destination_problem(&h.url, h.allow_private_network) {
        return Attempt::Failed {
            error: format!("refused destination: {problem}"),
            status: None,
        };
    }
    let key = match SigningKey::parse(h.secret.expose_secret()) {
        Ok(k) => k,
        Err(e) => {
            return Attempt::Failed {
                error: format!("secret: {e}"),
                status: None,
            };
        }
    };
    let timestamp = now_ms() / 1000;
    let signature = key.sign(&d.delivery_id, timestamp, d.payload.as_bytes());
    let client = if h.allow_private_network {
        &clients.any
    } else {
        &clients.public
    };
    let sent = client
        .post(&h.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.delivery_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Attempt::Delivered,
        Ok(resp) => Attempt::Failed {
            error: format!("the endpoint answered {}", resp.status()),
            status: Some(resp.status().as_u16()),
        },
        Err(e) => Attempt::Failed {
            // The whole chain ("error sending request: … resolves to no public address"),
            // without the URL, which may carry a token in its query.
            error: std::iter::successors(Some(&e.without_url() as &dyn std::error::Error), |e| {
                e.source()
            })
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": "),
            status: None,
        },
    }
}
