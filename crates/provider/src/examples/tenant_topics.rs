//! Topic-prefix authorizer per tenant: a client `user@tenant` may publish and subscribe only
//! under its tenant's prefix. Allowed topics pass on (a later provider may still deny);
//! anything else, and any client of an unknown tenant, is denied.
//!
//! `cargo run -p exhook-provider --example tenant_topics -- --listen 127.0.0.1:9001 \
//!     --tenant acme=acme/ --tenant globex=tenants/globex/`

use std::collections::HashMap;

use exhook_provider::model::ClientAuthorizeRequest;
use exhook_provider::{Decision, Provider, RequestExt, allow, deny};

/// Allows `user@tenant` under the tenant's topic prefix only.
pub struct TenantTopics(HashMap<String, String>);

impl TenantTopics {
    /// Tenants as `(name, topic prefix)` pairs.
    pub fn new(tenants: impl IntoIterator<Item = (String, String)>) -> TenantTopics {
        TenantTopics(tenants.into_iter().collect())
    }
}

#[exhook_provider::provider]
impl Provider for TenantTopics {
    async fn client_authorize(&self, r: &ClientAuthorizeRequest) -> Decision {
        let tenant = r.client().username.rsplit_once('@').map(|(_, t)| t);
        match tenant.and_then(|t| self.0.get(t)) {
            Some(prefix) if r.topic.starts_with(prefix.as_str()) => allow(),
            _ => deny(),
        }
    }
}
