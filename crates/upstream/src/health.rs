//! Periodic health checks of every replica, and re-loading a provider that comes back.
//!
//! The probe is the standard gRPC health check (`grpc.health.v1.Health/Check`, service "").
//! A provider that does not offer it answers UNIMPLEMENTED, which still proves the process is
//! up and speaking gRPC, so it counts as healthy; NOT_SERVING counts as down; a transport
//! error or timeout counts as down. When a provider that was loaded becomes reachable again
//! after being down (every replica failed, or its breaker opened), it is re-loaded with
//! `OnProviderLoaded` so its hook list is fresh.

use std::sync::{Arc, Weak};
use std::time::Duration;

use exhook_breaker::BreakerState;
use exhook_proto::model::ProviderLoadedRequest;

use crate::endpoint::Endpoint;
use crate::{Provider, ProviderState};

/// `grpc.health.v1.HealthCheckResponse`: only the status field matters here.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const NOT_SERVING: i32 = 2;
const PATH: &str = "/grpc.health.v1.Health/Check";

async fn probe(endpoint: &Endpoint, timeout: Duration) -> bool {
    // HealthCheckRequest{service: ""} encodes to nothing.
    let limit = crate::conn::ReplyLimit::DEFAULT;
    match endpoint.connection(0).call::<HealthCheckResponse>(PATH, bytes::Bytes::new(), timeout, limit).await {
        Ok(r) => r.status != NOT_SERVING,
        Err(crate::CallError::Status(s)) => s.code() == tonic::Code::Unimplemented,
        Err(_) => false,
    }
}

/// Probes every replica of `provider` every `health_interval` (read each round, so a reload
/// applies) until the provider is dropped; re-loads it when it comes back from an outage.
pub fn spawn_health_checker(provider: &Arc<Provider>, fallback: ProviderLoadedRequest) {
    let weak: Weak<Provider> = Arc::downgrade(provider);
    tokio::spawn(async move {
        let mut outage = false;
        loop {
            let interval = match weak.upgrade() {
                Some(p) => p.config().health_interval,
                None => return,
            };
            tokio::time::sleep(crate::provider::jitter(interval)).await;
            let Some(p) = weak.upgrade() else { return };
            let timeout = p.config().timeout.min(Duration::from_secs(1));
            let mut any_up = false;
            for e in p.endpoint_list() {
                let up = probe(e, timeout).await;
                if e.set_healthy(up) {
                    tracing::info!(provider = %p.name(), endpoint = %e.url, healthy = up, "replica health changed");
                }
                any_up |= up;
            }
            if p.registration().is_none() {
                continue; // never loaded: the background loader owns it
            }
            if !any_up {
                outage = true;
                continue;
            }
            let open = p.breaker_state() == BreakerState::Open;
            if !(outage || open || p.state() == ProviderState::Failed) {
                continue;
            }
            // Back from an outage: re-load it. While its breaker is open the re-load is the
            // half-open probe (refused until the cool-down has passed).
            let permit = match p.breaker().try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    outage = true;
                    continue;
                }
            };
            tracing::info!(provider = %p.name(), "provider is back; re-loading it");
            let timeout = p.config().timeout.max(Duration::from_secs(1));
            match p.load_all(&fallback, timeout).await {
                Ok(_) => {
                    permit.success();
                    outage = false;
                }
                Err(e) => {
                    permit.failure();
                    tracing::warn!(provider = %p.name(), error = %e, "re-load failed");
                    outage = true;
                }
            }
        }
    });
}
