#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

// The `#[provider]` attribute names `::exhook_provider::Hook`; this lets it work inside this
// crate's own unit tests too.
extern crate self as exhook_provider;

pub mod answer;
#[cfg(feature = "examples")]
pub mod examples;
pub mod health;
mod provider;
mod server;
mod service;

pub use answer::{ALLOW_PUBLISH, Decision, Ignorable, Publish, allow, deny, ignore, rewrite, stop_publish};
pub use exhook_hooks::{Hook, Version};
/// The version-neutral request and answer types (`exhook_proto::model`): what every hook method
/// receives, whatever package EMQX speaks.
pub use exhook_proto::model;
pub use exhook_provider_macros::provider;
pub use provider::{Provider, RequestExt};
pub use server::{Listening, ServeError, Server, TlsFiles, serve};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    struct Everything;

    #[provider]
    impl Provider for Everything {
        async fn provider_loaded(&self, _: &ProviderLoadedRequest) {}
        async fn message_acked(&self, _: &MessageAckedRequest) {}
        async fn client_connect(&self, _: &ClientConnectRequest) {}
        async fn client_connack(&self, _: &ClientConnackRequest) {}
        async fn client_connected(&self, _: &ClientConnectedRequest) {}
        async fn client_disconnected(&self, _: &ClientDisconnectedRequest) {}
        async fn client_authenticate(&self, _: &ClientAuthenticateRequest) -> Decision {
            allow()
        }
        async fn client_authorize(&self, _: &ClientAuthorizeRequest) -> Decision {
            deny()
        }
        async fn client_subscribe(&self, _: &ClientSubscribeRequest) {}
        async fn client_unsubscribe(&self, _: &ClientUnsubscribeRequest) {}
        async fn session_created(&self, _: &SessionCreatedRequest) {}
        async fn session_subscribed(&self, _: &SessionSubscribedRequest) {}
        async fn session_unsubscribed(&self, _: &SessionUnsubscribedRequest) {}
        async fn session_resumed(&self, _: &SessionResumedRequest) {}
        async fn session_discarded(&self, _: &SessionDiscardedRequest) {}
        async fn session_takenover(&self, _: &SessionTakenoverRequest) {}
        async fn session_terminated(&self, _: &SessionTerminatedRequest) {}
        async fn message_publish(&self, _: &MessagePublishRequest) -> Publish {
            stop_publish()
        }
        async fn message_delivered(&self, _: &MessageDeliveredRequest) {}
        async fn message_dropped(&self, _: &MessageDroppedRequest) {}
    }

    struct Nothing;

    #[provider]
    impl Provider for Nothing {}

    /// The attribute's method table agrees with the hook table: every hookpoint, in order,
    /// and the method names are the hookpoint names with `_` for `.`.
    #[test]
    fn the_attribute_knows_every_hook() {
        assert_eq!(Everything::HOOKS, Hook::hookpoints().collect::<Vec<_>>());
        assert!(Nothing::HOOKS.is_empty());
    }
}
