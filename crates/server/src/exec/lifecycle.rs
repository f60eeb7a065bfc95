//! OnProviderLoaded / OnProviderUnloaded: fanned out to the tenant's providers only, through
//! each provider's breaker and limit, with each tenant's broker info kept.

use std::sync::Arc;
use std::time::Duration;

use exhook_hooks::{Hook, Version};
use exhook_proto::model::{EmptySuccess, LoadedResponse, ProviderLoadedRequest, ProviderUnloadedRequest};
use exhook_upstream::{Provider, Route};
use tokio::time::Instant;

use crate::loaded::loaded_response;

use super::*;

/// How long EMQX waits for `OnProviderUnloaded` (5.x: a fixed 5 s); the gateway forwards it
/// with the same bound, in the background.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(5);

impl Runtime {
    /// EMQX (re)loaded the gateway: load the tenant's providers with EMQX's broker info (within
    /// EMQX's deadline, through each provider's breaker and limit; those that fail keep
    /// retrying in the background) and answer with the union of hooks in the caller's
    /// spelling. A provider shared with other tenants keeps each tenant's broker info.
    pub(crate) async fn provider_loaded(
        &self,
        t: usize,
        caller: Version,
        request: ProviderLoadedRequest,
        deadline: Instant,
    ) -> LoadedResponse {
        let tenant = &self.config.tenants[t];
        let loads = tenant.reachable.iter().map(|&i| {
            let p = &self.providers[i];
            let request = &request;
            async move {
                p.loaded_by(&tenant.name, request);
                let remaining = deadline.saturating_duration_since(Instant::now());
                let timeout = p.config().timeout.max(Duration::from_secs(1)).min(remaining);
                if let Err(e) = p.load_admitted(request, timeout).await {
                    // Never loaded: the background loader retries. Loaded before: its health
                    // check re-loads it (with this broker info) once it answers again.
                    tracing::warn!(provider = %self.provider_name(i), error = %e, "provider not loaded; retrying in the background");
                    if p.registration().is_none() {
                        p.spawn_loader(self.own_broker.clone(), MAX_LOAD_BACKOFF);
                    }
                }
            }
        });
        futures::future::join_all(loads).await;
        let registrations: Vec<_> = self.providers.iter().map(|p| p.registration()).collect();
        let response = loaded_response(tenant, &registrations, caller);
        tracing::info!(tenant = %tenant.name, caller = %caller, hooks = response.hooks.len(), "EMQX loaded the gateway");
        response
    }

    /// EMQX unloaded the gateway: forward to each of the tenant's providers that no other
    /// tenant still has loaded (reply ignored, as EMQX does), through its breaker and limit.
    pub(crate) fn provider_unloaded(&self, t: usize, request: ProviderUnloadedRequest) -> EmptySuccess {
        let tenant = &self.config.tenants[t];
        for &i in &tenant.reachable {
            let p = Arc::clone(&self.providers[i]);
            if !p.unloaded_by(&tenant.name) {
                tracing::debug!(provider = %self.provider_name(i), tenant = %tenant.name, others = ?p.loaded_tenants(), "OnProviderUnloaded kept back: other tenants still use the provider");
                continue;
            }
            let Some(version) = p.version() else { continue };
            let body = Provider::encode_for(&request, version);
            // The call records its own result (breaker_open, ok, ...), as every call does.
            tokio::spawn(async move {
                let hook = Hook::ProviderUnloaded;
                let _ = p.call::<EmptySuccess>(hook, version, body, UNLOAD_TIMEOUT, 0, Route::Valued).await;
            });
        }
        tracing::info!(tenant = %tenant.name, "EMQX unloaded the gateway");
        EmptySuccess {}
    }
}
