//! Secrets in memory: [`Secret`], whose `Debug` and `Display` never show the value, and the
//! hand-written `Debug` of every generated message that carries one.
//!
//! The contract has one secret field, `ClientInfo.password` (v1, v2, v3 and the model; filled
//! in `OnClientAuthenticate`). prost derives `Debug` for every message, so a
//! `tracing::debug!(?request)` anywhere would print it; `build.rs` therefore skips the derived
//! `Debug` of `ClientInfo` and this module writes one that prints `password: <redacted>`
//! (or `""` when EMQX sent none, which is what every hook but authenticate carries). The
//! gateway still forwards the password to providers unchanged: only its text forms redact.
#![warn(missing_docs, clippy::all)]

use std::fmt;

use crate::{model, v1, v2, v3};

/// What a redacted value prints as.
const REDACTED: &str = "<redacted>";

/// A value that must never be shown: a password, a bearer token, a private key.
///
/// `Debug` and `Display` print `<redacted>` whatever `T` holds, so neither `?secret`,
/// `{secret}` nor the derived `Debug` of a struct holding one can leak it. The value is reached
/// only through [`Secret::expose`], a name that stands out in review. There is deliberately no
/// `PartialEq`: `==` on secrets returns early at the first differing byte; compare them in
/// constant time instead (the admin token compares SHA-256 digests with `subtle`).
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself: for the one place that needs it (a comparison, the wire).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Transforms the value without unwrapping it into view (e.g. trimming a token).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret(f(self.0))
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret string field in a message's `Debug`: `""` when empty (whether EMQX sent one at all
/// is worth seeing when debugging authentication), `<redacted>` otherwise — not even the
/// length, which would narrow a guess.
struct RedactedField<'a>(&'a str);

impl fmt::Debug for RedactedField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("\"\"") } else { f.write_str(REDACTED) }
    }
}

/// `Debug` for a generated message: `$field`s as prost would print them, `$secret`s redacted.
/// The destructuring has no `..`, so a field added to the proto does not build until it is
/// listed here as shown or as secret: nothing new is printed without a decision.
macro_rules! redacted_debug {
    ($($ty:path => $name:literal { $($field:ident),* $(,)? } secret { $($secret:ident),* $(,)? })*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $ty { $($field,)* $($secret,)* } = self;
                f.debug_struct($name)
                    $(.field(stringify!($field), $field))*
                    $(.field(stringify!($secret), &RedactedField($secret)))*
                    .finish()
            }
        }
    )*};
}

redacted_debug! {
    model::ClientInfo => "ClientInfo" {
        node, clientid, username, peerhost, sockport, protocol, mountpoint, is_superuser, anonymous, cn, dn, peerport,
    } secret { password }
    v1::ClientInfo => "ClientInfo" {
        node, clientid, username, peerhost, sockport, protocol, mountpoint, is_superuser, anonymous, cn, dn,
    } secret { password }
    v2::ClientInfo => "ClientInfo" {
        node, clientid, username, peerhost, sockport, protocol, mountpoint, is_superuser, anonymous, cn, dn, peerport,
    } secret { password }
    v3::ClientInfo => "ClientInfo" {
        node, clientid, username, peerhost, sockport, protocol, mountpoint, is_superuser, anonymous, cn, dn, peerport,
    } secret { password }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "Tr0ub4dor-and-3-horses";

    /// The Debug of `value` (and of a request wrapping it), checked to name every shown field
    /// and never the password.
    fn assert_redacted(debug: String, wrapped: String, shown: &[&str]) {
        for text in [&debug, &wrapped] {
            assert!(!text.contains(PASSWORD), "password printed: {text}");
            assert!(text.contains("password: <redacted>"), "{text}");
        }
        for s in shown {
            assert!(debug.contains(s), "{s:?} missing from {debug}");
        }
    }

    #[test]
    fn model_client_info_redacts_the_password() {
        let c = model::ClientInfo {
            clientid: "c-1".into(),
            username: "alice".into(),
            password: PASSWORD.into(),
            peerport: 50_001,
            ..Default::default()
        };
        let r = model::ClientAuthenticateRequest { clientinfo: Some(c.clone()), result: true, meta: None };
        assert_redacted(
            format!("{c:?}"),
            format!("{r:#?}"),
            &["clientid: \"c-1\"", "username: \"alice\"", "peerport: 50001"],
        );
    }

    #[test]
    fn v1_client_info_redacts_the_password() {
        let c =
            v1::ClientInfo { clientid: "c-1".into(), password: PASSWORD.into(), sockport: 1883, ..Default::default() };
        let r = v1::ClientAuthenticateRequest { clientinfo: Some(c.clone()), result: true, meta: None };
        assert_redacted(format!("{c:?}"), format!("{r:?}"), &["clientid: \"c-1\"", "sockport: 1883"]);
    }

    #[test]
    fn v2_client_info_redacts_the_password() {
        let c = v2::ClientInfo { clientid: "c-1".into(), password: PASSWORD.into(), peerport: 7, ..Default::default() };
        let r = v2::ClientAuthorizeRequest { clientinfo: Some(c.clone()), ..Default::default() };
        assert_redacted(format!("{c:?}"), format!("{r:?}"), &["clientid: \"c-1\"", "peerport: 7"]);
    }

    #[test]
    fn v3_client_info_redacts_the_password() {
        let c = v3::ClientInfo {
            clientid: "c-1".into(),
            password: PASSWORD.into(),
            cn: "dev-1".into(),
            ..Default::default()
        };
        let r = v3::MessageDeliveredRequest { clientinfo: Some(c.clone()), ..Default::default() };
        assert_redacted(format!("{c:?}"), format!("{r:?}"), &["clientid: \"c-1\"", "cn: \"dev-1\""]);
    }

    #[test]
    fn an_absent_password_shows_as_empty() {
        let c = model::ClientInfo { clientid: "c-1".into(), ..Default::default() };
        assert!(format!("{c:?}").contains("password: \"\""), "{c:?}");
    }

    #[test]
    fn redaction_does_not_touch_the_wire() {
        // The provider must still get the password: only the text forms redact.
        let c = v3::ClientInfo { password: PASSWORD.into(), ..Default::default() };
        let back = <model::ClientInfo as prost::Message>::decode(prost::Message::encode_to_vec(&c).as_slice()).unwrap();
        assert_eq!(back.password, PASSWORD);
    }

    /// Every field of every message whose name says "secret", as `.package.Message.field`.
    fn secret_looking_fields() -> Vec<String> {
        fn walk(prefix: &str, m: &prost_types::DescriptorProto, out: &mut Vec<String>) {
            let name = format!("{prefix}.{}", m.name());
            for f in &m.field {
                let lower = f.name().to_ascii_lowercase();
                if ["password", "passwd", "secret", "token", "credential", "private", "auth_data"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    out.push(format!("{name}.{}", f.name()));
                }
            }
            for nested in &m.nested_type {
                walk(&name, nested, out);
            }
        }
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let mut out = Vec::new();
        for file in &set.file {
            for m in &file.message_type {
                walk(&format!(".{}", file.package()), m, &mut out);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_secret_field_of_the_contract_is_redacted() {
        // A new secret-looking field fails here until its message is added to build.rs's
        // REDACTED_DEBUG and given a `redacted_debug!` entry above (then this list).
        assert_eq!(
            secret_looking_fields(),
            [
                ".emqx.exhook.v1.ClientInfo.password",
                ".emqx.exhook.v2.ClientInfo.password",
                ".emqx.exhook.v3.ClientInfo.password",
                ".exhook.gateway.model.ClientInfo.password",
            ]
        );
    }

    #[test]
    fn secret_prints_redacted_in_every_text_form() {
        let s = Secret::new(String::from(PASSWORD));
        #[derive(Debug)]
        #[allow(dead_code)] // read only through Debug
        struct Holder {
            token: Secret<String>,
        }
        let holder = Holder { token: s.clone() };
        for text in [format!("{s:?}"), format!("{s}"), format!("{s:#?}"), format!("{holder:?}"), s.to_string()] {
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert_eq!(s.expose(), PASSWORD);
        assert_eq!(s.map(|t| t.len()).expose(), &PASSWORD.len());
    }
}
