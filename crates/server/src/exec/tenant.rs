//! Who is calling: a caller identity (own listener, verified certificate names) or its
//! `RequestMeta.cluster_name` → the tenant, or a refusal.

use std::sync::atomic::Ordering;

use exhook_config::{UnknownClient, UnknownCluster};
use exhook_metrics::IdentityEvent;
use exhook_proto::model::RequestMeta;
use tonic::Status;

use crate::listen::CallerInfo;

use super::*;

/// Marks the connection warned; true if it already was.
fn c_warned(caller: Option<&CallerInfo>) -> bool {
    caller.is_some_and(|c| c.warned.swap(true, Ordering::Relaxed))
}

impl Runtime {
    /// A `cluster_name` that selects no tenant: the default tenant without `[[tenants]]` or
    /// with `unknown_cluster = "default"`; otherwise refused (counted, logged once per name).
    fn unknown_cluster(&self, cluster: &str) -> Result<usize, Status> {
        if self.config.tenants.len() == 1 || self.config.server.unknown_cluster == UnknownCluster::Default {
            return Ok(0);
        }
        self.metrics.metrics().identity(IdentityEvent::RejectedUnknownCluster);
        let mut logged = self.unknown_clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.len() < MAX_LOGGED_CLUSTERS && logged.insert(cluster.to_owned()) {
            drop(logged);
            tracing::warn!(cluster_name = %cluster, "RequestMeta.cluster_name selects no tenant: calls refused (server.unknown_cluster = \"reject\")");
        }
        Err(Status::permission_denied(format!("cluster_name {cluster:?} selects no tenant of this gateway")))
    }

    /// The tenant of a call. Identity first: a tenant's own listener, else a verified client
    /// certificate's names (`client_cert_names`; one that names no tenant is rejected or the
    /// default tenant, per `unknown_client`). Only a caller without either is placed by
    /// `RequestMeta.cluster_name`; a `cluster_name` that claims another tenant than the
    /// identity does not move the call (counted and logged once per connection).
    pub(crate) fn tenant_of(&self, caller: Option<&CallerInfo>, meta: Option<&RequestMeta>) -> Result<usize, Status> {
        let cluster = meta.map_or("", |m| m.cluster_name.as_str());
        let by_cluster = self.tenant_by_cluster.get(cluster).copied();
        let t = match caller {
            Some(c) if c.listener_tenant.is_some() => {
                let name = c.listener_tenant.as_deref().unwrap_or_default();
                // A tenant removed by a reload keeps its listener until a restart: refuse.
                self.tenant_by_name
                    .get(name)
                    .copied()
                    .ok_or_else(|| Status::permission_denied(format!("tenant {name:?} is no longer configured")))?
            }
            Some(c) if c.cert_names.is_some() => {
                let names = c.cert_names.as_deref().unwrap_or_default();
                match names.iter().find_map(|n| self.tenant_by_cert_name.get(n.as_str())) {
                    Some(&t) => t,
                    None if c.unknown_client == UnknownClient::Default => 0,
                    None => {
                        self.metrics.metrics().identity(IdentityEvent::RejectedUnknownClient);
                        if !c.warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(remote = ?c.remote, certificate_names = ?names, "client certificate names no tenant: calls refused (server.tls.unknown_client = \"reject\")");
                        }
                        return Err(Status::permission_denied("client certificate names no tenant"));
                    }
                }
            }
            _ => return by_cluster.map_or_else(|| self.unknown_cluster(cluster), Ok),
        };
        if let Some(claimed) = by_cluster
            && claimed != t
        {
            self.metrics.metrics().identity(IdentityEvent::ClusterNameMismatch);
            if !c_warned(caller) {
                tracing::warn!(remote = ?caller.and_then(|c| c.remote), cluster_name = %cluster, claimed = %self.config.tenants[claimed].name, tenant = %self.config.tenants[t].name, "cluster_name claims another tenant than the caller's identity: the identity wins");
            }
        }
        Ok(t)
    }
}
