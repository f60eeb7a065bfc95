use std::fmt;

use crate::Version;

/// How EMQX treats the answer of a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `OnProviderLoaded` / `OnProviderUnloaded`: not a hookpoint, never chained.
    Lifecycle,
    /// An `EmptySuccess` RPC: EMQX waits for the reply but discards it.
    Notify,
    /// A `ValuedResponse` RPC folded across the chain.
    Valued,
}

macro_rules! hooks {
    ($( $variant:ident, $rpc5:literal, $rpc4:literal, $point5:literal, $point4:literal, $kind:ident; )*) => {
        /// One ExHook RPC. The discriminant is stable and indexes per-hook tables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Hook { $( #[doc = concat!("`", $rpc5, "`")] $variant, )* }

        impl Hook {
            /// Every hook, in the proto's RPC order.
            pub const ALL: [Hook; 21] = [ $( Hook::$variant, )* ];

            /// The RPC name in `version`'s package (4.x renamed two of them).
            pub const fn rpc(self, version: Version) -> &'static str {
                match (self, version) {
                    $( (Hook::$variant, Version::V1) => $rpc4, (Hook::$variant, _) => $rpc5, )*
                }
            }

            /// The gRPC path (`/<package>.HookProvider/<Rpc>`) in `version`'s package.
            pub const fn path(self, version: Version) -> &'static str {
                match (self, version) {
                    $(
                        (Hook::$variant, Version::V1) => concat!("/emqx.exhook.v1.HookProvider/", $rpc4),
                        (Hook::$variant, Version::V2) => concat!("/emqx.exhook.v2.HookProvider/", $rpc5),
                        (Hook::$variant, Version::V3) => concat!("/emqx.exhook.v3.HookProvider/", $rpc5),
                    )*
                }
            }

            /// The EMQX hookpoint name as `version`'s EMQX line spells it in `LoadedResponse`
            /// (`None` for the two lifecycle RPCs).
            pub const fn hookpoint(self, version: Version) -> Option<&'static str> {
                let name = match (self, version) { $( (Hook::$variant, Version::V1) => $point4, (Hook::$variant, _) => $point5, )* };
                if name.is_empty() { None } else { Some(name) }
            }

            /// The hookpoint name used in configuration, metrics and logs (EMQX 5.x spelling).
            pub const fn name(self) -> &'static str {
                match self { $( Hook::$variant => if $point5.is_empty() { $rpc5 } else { $point5 }, )* }
            }

            /// How EMQX treats this hook's answer.
            pub const fn kind(self) -> HookKind {
                match self { $( Hook::$variant => HookKind::$kind, )* }
            }

            /// Looks a hookpoint name up; the 4.x names `client.check_acl` and
            /// `session.takeovered` are accepted as aliases of the 5.x names.
            pub fn from_hookpoint(name: &str) -> Option<Hook> {
                match name {
                    $( $point5 | $point4 if !$point5.is_empty() => Some(Hook::$variant), )*
                    _ => None,
                }
            }

            /// Looks an RPC name of `version`'s package up.
            pub fn from_rpc(version: Version, rpc: &str) -> Option<Hook> {
                Hook::ALL.into_iter().find(|h| h.rpc(version) == rpc)
            }
        }
    };
}

hooks! {
    ProviderLoaded, "OnProviderLoaded", "OnProviderLoaded", "", "", Lifecycle;
    ProviderUnloaded, "OnProviderUnloaded", "OnProviderUnloaded", "", "", Lifecycle;
    ClientConnect, "OnClientConnect", "OnClientConnect", "client.connect", "client.connect", Notify;
    ClientConnack, "OnClientConnack", "OnClientConnack", "client.connack", "client.connack", Notify;
    ClientConnected, "OnClientConnected", "OnClientConnected", "client.connected", "client.connected", Notify;
    ClientDisconnected, "OnClientDisconnected", "OnClientDisconnected", "client.disconnected", "client.disconnected", Notify;
    ClientAuthenticate, "OnClientAuthenticate", "OnClientAuthenticate", "client.authenticate", "client.authenticate", Valued;
    ClientAuthorize, "OnClientAuthorize", "OnClientCheckAcl", "client.authorize", "client.check_acl", Valued;
    ClientSubscribe, "OnClientSubscribe", "OnClientSubscribe", "client.subscribe", "client.subscribe", Notify;
    ClientUnsubscribe, "OnClientUnsubscribe", "OnClientUnsubscribe", "client.unsubscribe", "client.unsubscribe", Notify;
    SessionCreated, "OnSessionCreated", "OnSessionCreated", "session.created", "session.created", Notify;
    SessionSubscribed, "OnSessionSubscribed", "OnSessionSubscribed", "session.subscribed", "session.subscribed", Notify;
    SessionUnsubscribed, "OnSessionUnsubscribed", "OnSessionUnsubscribed", "session.unsubscribed", "session.unsubscribed", Notify;
    SessionResumed, "OnSessionResumed", "OnSessionResumed", "session.resumed", "session.resumed", Notify;
    SessionDiscarded, "OnSessionDiscarded", "OnSessionDiscarded", "session.discarded", "session.discarded", Notify;
    SessionTakenover, "OnSessionTakenover", "OnSessionTakeovered", "session.takenover", "session.takeovered", Notify;
    SessionTerminated, "OnSessionTerminated", "OnSessionTerminated", "session.terminated", "session.terminated", Notify;
    MessagePublish, "OnMessagePublish", "OnMessagePublish", "message.publish", "message.publish", Valued;
    MessageDelivered, "OnMessageDelivered", "OnMessageDelivered", "message.delivered", "message.delivered", Notify;
    MessageDropped, "OnMessageDropped", "OnMessageDropped", "message.dropped", "message.dropped", Notify;
    MessageAcked, "OnMessageAcked", "OnMessageAcked", "message.acked", "message.acked", Notify;
}

impl Hook {
    /// Every hook EMQX can register (all but the two lifecycle RPCs).
    pub fn hookpoints() -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(|h| h.kind() != HookKind::Lifecycle)
    }

    /// True for the four `message.*` hooks, the only ones topic filters apply to.
    pub const fn is_message_hook(self) -> bool {
        matches!(self, Hook::MessagePublish | Hook::MessageDelivered | Hook::MessageDropped | Hook::MessageAcked)
    }

    /// Stable index 0..21.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook name that EMQX does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown hook {0:?} (expected an EMQX hookpoint such as client.authenticate, client.authorize, message.publish, session.created)"
)]
pub struct UnknownHook(pub String);

impl std::str::FromStr for Hook {
    type Err = UnknownHook;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hook::from_hookpoint(s).ok_or_else(|| UnknownHook(s.to_owned()))
    }
}

/// A set of hooks as a bitmask: `Copy`, no allocation, O(1) membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HookSet(u32);

impl HookSet {
    /// The empty set.
    pub const EMPTY: HookSet = HookSet(0);

    /// Adds a hook.
    pub fn insert(&mut self, hook: Hook) {
        self.0 |= 1 << hook.index();
    }

    /// Membership.
    pub const fn contains(self, hook: Hook) -> bool {
        self.0 & (1 << hook.index()) != 0
    }

    /// Union of two sets.
    pub const fn union(self, other: HookSet) -> HookSet {
        HookSet(self.0 | other.0)
    }

    /// True if no hook is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The hooks in the set, in [`Hook::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

impl FromIterator<Hook> for HookSet {
    fn from_iter<I: IntoIterator<Item = Hook>>(iter: I) -> Self {
        let mut s = HookSet::EMPTY;
        for h in iter {
            s.insert(h);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_version() {
        assert_eq!(Hook::ClientAuthorize.rpc(Version::V1), "OnClientCheckAcl");
        assert_eq!(Hook::ClientAuthorize.rpc(Version::V3), "OnClientAuthorize");
        assert_eq!(Hook::SessionTakenover.path(Version::V1), "/emqx.exhook.v1.HookProvider/OnSessionTakeovered");
        assert_eq!(Hook::SessionTakenover.path(Version::V2), "/emqx.exhook.v2.HookProvider/OnSessionTakenover");
        assert_eq!(Hook::ClientAuthorize.hookpoint(Version::V1), Some("client.check_acl"));
        assert_eq!(Hook::ClientAuthorize.hookpoint(Version::V2), Some("client.authorize"));
        assert_eq!(Hook::ProviderLoaded.hookpoint(Version::V3), None);
        assert_eq!(Hook::ProviderLoaded.name(), "OnProviderLoaded");
        assert_eq!(Hook::MessagePublish.name(), "message.publish");
    }

    #[test]
    fn aliases_and_lookup() {
        assert_eq!(Hook::from_hookpoint("client.check_acl"), Some(Hook::ClientAuthorize));
        assert_eq!(Hook::from_hookpoint("session.takeovered"), Some(Hook::SessionTakenover));
        assert_eq!(Hook::from_hookpoint("session.takenover"), Some(Hook::SessionTakenover));
        assert_eq!(Hook::from_hookpoint(""), None);
        assert_eq!(Hook::from_hookpoint("OnProviderLoaded"), None);
        assert_eq!(Hook::from_hookpoint("client.nope"), None);
        for v in Version::NEWEST_FIRST {
            for h in Hook::ALL {
                assert_eq!(Hook::from_rpc(v, h.rpc(v)), Some(h));
                if let Some(p) = h.hookpoint(v) {
                    assert_eq!(Hook::from_hookpoint(p), Some(h));
                }
            }
        }
        assert_eq!(Hook::hookpoints().count(), 19);
        assert_eq!(Hook::ALL.iter().filter(|h| h.kind() == HookKind::Valued).count(), 3);
    }

    #[test]
    fn hookset() {
        let s: HookSet = [Hook::MessageAcked, Hook::ClientConnect].into_iter().collect();
        assert!(s.contains(Hook::MessageAcked) && s.contains(Hook::ClientConnect));
        assert!(!s.contains(Hook::MessagePublish));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Hook::ClientConnect, Hook::MessageAcked]);
    }
}
