//! Deny-list authenticator: refuses clients whose clientid or username is listed, and has no
//! opinion on everybody else (the next provider, or EMQX's own value, decides).
//!
//! `cargo run -p exhook-provider --example deny_list -- --listen 127.0.0.1:9001 --deny mallory`

use std::collections::HashSet;

use exhook_provider::model::ClientAuthenticateRequest;
use exhook_provider::{Decision, Provider, RequestExt, deny, ignore};

/// Denies the listed clientids and usernames; `ignore()` for the rest.
pub struct DenyList(HashSet<String>);

impl DenyList {
    /// A deny list of these clientids and usernames (one set: a name matches either).
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> DenyList {
        DenyList(names.into_iter().map(Into::into).collect())
    }
}

#[exhook_provider::provider]
impl Provider for DenyList {
    async fn client_authenticate(&self, r: &ClientAuthenticateRequest) -> Decision {
        let c = r.client();
        if self.0.contains(&c.clientid) || self.0.contains(&c.username) { deny() } else { ignore() }
    }
}
