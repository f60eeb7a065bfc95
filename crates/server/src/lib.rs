//! exhook-gateway's EMQX-facing side.
//!
//! [`Gateway`] serves `HookProvider` of `emqx.exhook.v1`, `v2` and `v3` on one listener
//! (the gRPC path selects the package), converts every call into the internal model, picks
//! the tenant by `RequestMeta.cluster_name`, and runs the tenant's chain for the hook:
//! a fold for valued hooks, queued (or awaited) delivery for notifications.
#![warn(missing_docs)]

mod deadline;
mod exec;
mod loaded;
pub mod observe;
mod service;

use std::future::Future;
use std::sync::Arc;

use exhook_config::Config;
use exhook_upstream::Provider;
use tokio::net::TcpListener;

pub use deadline::parse_grpc_timeout;
pub use exec::outcome_name;
pub use loaded::loaded_response;
pub use observe::{NoopObserver, Observer};
pub use service::{HookService, Package, PackageV1, PackageV2, PackageV3};

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A provider's URL could not be turned into an endpoint.
    #[error("provider {provider}: {source}")]
    Provider {
        /// Provider name.
        provider: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A configured gateway: providers created (channels connect lazily), ready to serve.
#[derive(Clone)]
pub struct Gateway {
    runtime: Arc<exec::Runtime>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("providers", &self.runtime.providers.len()).finish()
    }
}

impl Gateway {
    /// Creates the providers and their notification queues. Needs a tokio runtime.
    pub fn new(config: Config, observer: Arc<dyn Observer>) -> Result<Gateway, ServeError> {
        let providers = config
            .providers
            .iter()
            .enumerate()
            .map(|(i, pc)| {
                Provider::new(i, pc.clone())
                    .map_err(|source| ServeError::Provider { provider: pc.name.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway { runtime: Arc::new(exec::Runtime::new(config, providers, observer)) })
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.runtime.config
    }

    /// The providers, in `[[providers]]` order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.runtime.providers
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.runtime.providers.iter().find(|p| p.name() == name)
    }

    /// Starts loading every provider in the background (with the gateway's own broker info
    /// until EMQX sends its own), retrying those that are down.
    pub fn start_loading(&self) {
        for p in &self.runtime.providers {
            p.spawn_loader(self.runtime.own_broker.clone(), std::time::Duration::from_secs(30));
        }
    }

    /// Serves the three packages on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(HookService::<PackageV1>::new(Arc::clone(&self.runtime)))
            .add_service(HookService::<PackageV2>::new(Arc::clone(&self.runtime)))
            .add_service(HookService::<PackageV3>::new(Arc::clone(&self.runtime)))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
