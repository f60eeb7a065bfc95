//! `requests`: every RPC request of every package, decoded as EMQX's bytes reach the gateway
//! and converted for providers of each package.

use std::fmt::Debug;

use exhook_hooks::{Hook, HookRequest, Version, convert};
use exhook_proto::{model, v1};
use exhook_upstream::Provider;
use prost::Message;

use crate::types::with_request_types;

/// The RPC and package an input's first byte selects: `hook + 21 * package` (mod 63).
pub fn select(byte: u8) -> (Hook, Version) {
    let i = usize::from(byte) % (Hook::ALL.len() * 3);
    let version = Version::from_index(i / Hook::ALL.len()).unwrap_or(Version::V3);
    (Hook::ALL[i % Hook::ALL.len()], version)
}

/// The selector byte of `(hook, version)`: the inverse of [`select`].
pub fn selector(hook: Hook, version: Version) -> u8 {
    // 21 * 2 + 20 = 62: always fits.
    u8::try_from(hook.index() + Hook::ALL.len() * version.index()).unwrap_or(0)
}

/// See [`crate::requests`].
pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let (hook, from) = select(sel);
    with_request_types!(hook, check(from, body));
}

/// A package's own type decodes → the model decodes its re-encoding, and the model keeps
/// every field of it (the package re-reads the model's encoding as the same message).
fn model_keeps_package_fields<P, M>(body: &[u8])
where
    P: Message + Default + PartialEq + Debug,
    M: Message + Default,
{
    let Ok(p) = P::decode(body) else { return };
    let m = M::decode(p.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("the model cannot decode a valid {}: {e}", std::any::type_name::<P>()));
    let again = P::decode(m.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("{} cannot re-read the model's encoding: {e}", std::any::type_name::<P>()));
    assert_eq!(again, p, "the model lost a field of {}", std::any::type_name::<P>());
}

/// The bytes the gateway sends a provider of `to` for the canonical request `c`.
fn wire_for<M: HookRequest>(c: &M, to: Version) -> Vec<u8> {
    if M::HOOK == Hook::ProviderLoaded && to == Version::V1 {
        // The one wire conflict (uptime is text in v1): converted by hand, as Provider::load does.
        let m = model::ProviderLoadedRequest::decode(c.encode_to_vec().as_slice()).unwrap_or_default();
        return convert::loaded_request_to_v1(&m).encode_to_vec();
    }
    Provider::encode_for(c, to).to_vec()
}

/// Decodes what a provider of `to` received as `P`, back into the canonical model.
fn received_as<M: HookRequest, P: Message + Default>(wire: &[u8], to: Version) -> (P, M) {
    let p = P::decode(wire).unwrap_or_else(|e| {
        panic!("a {to} provider cannot decode what the gateway sends ({}): {e}", std::any::type_name::<P>())
    });
    let mut back = if M::HOOK == Hook::ProviderLoaded && to == Version::V1 {
        let v = v1::ProviderLoadedRequest::decode(p.encode_to_vec().as_slice()).unwrap_or_default();
        M::decode(convert::loaded_request_from_v1(&v).encode_to_vec().as_slice()).unwrap_or_default()
    } else {
        M::decode(p.encode_to_vec().as_slice())
            .unwrap_or_else(|e| panic!("the model cannot re-read a {to} request: {e}"))
    };
    back.normalize(to);
    (p, back)
}

/// `c` as a provider of `to` sees it, read back into the model: the model fields `to`'s
/// package does not have are gone, nothing else changed.
fn project<M: HookRequest, P: Message + Default>(c: &M, to: Version) -> M {
    let p = P::decode(c.encode_to_vec().as_slice()).unwrap_or_default();
    let mut m = M::decode(p.encode_to_vec().as_slice()).unwrap_or_default();
    m.normalize(to);
    m
}

/// One trip of `c` to a provider of `to` and back.
fn trip<M, P>(c: &M, to: Version) -> M
where
    M: HookRequest + PartialEq + Debug,
    P: Message + Default,
{
    received_as::<M, P>(&wire_for(c, to), to).1
}

fn check_package<M, P>(c: &M, to: Version)
where
    M: HookRequest + PartialEq + Debug,
    P: Message + Default + PartialEq + Debug,
{
    let back = trip::<M, P>(c, to);
    // What EMQX dispatches on, routes by and tenants by survives every package.
    assert_eq!(back.dispatch_key(), c.dispatch_key(), "{to}: dispatch key changed");
    assert_eq!(back.topic(), c.topic(), "{to}: message topic changed");
    assert_eq!(back.meta(), c.meta(), "{to}: RequestMeta changed");
    // The package round trip is stable: a second trip changes nothing.
    assert_eq!(trip::<M, P>(&back, to), back, "{to}: round trip not stable");
    // v3 is the canonical shape: the trip only drops what the package does not have (the
    // model's legacy `TopicFilter.qos` and `SubOpts.share`). v1 and v2 reshape (topic filters,
    // shared subscriptions, User-Property in `props`); the assertions above cover them.
    if to == Version::V3 {
        assert_eq!(back, project::<M, P>(c, to), "{to}: a field the package has was lost or changed");
    }
}

fn check<M, P1, P2, P3>(from: Version, body: &[u8])
where
    M: HookRequest + PartialEq + Debug,
    P1: Message + Default + PartialEq + Debug,
    P2: Message + Default + PartialEq + Debug,
    P3: Message + Default + PartialEq + Debug,
{
    let loaded_v1 = M::HOOK == Hook::ProviderLoaded && from == Version::V1;
    match from {
        Version::V1 if !loaded_v1 => model_keeps_package_fields::<P1, M>(body),
        Version::V1 => {}
        Version::V2 => model_keeps_package_fields::<P2, M>(body),
        Version::V3 => model_keeps_package_fields::<P3, M>(body),
    }
    // What the gateway does with EMQX's bytes (crates/server's service): v1's
    // OnProviderLoaded through the v1 type, everything else straight into the model.
    let decoded = if loaded_v1 {
        v1::ProviderLoadedRequest::decode(body).map(|r| {
            check_uptime(&r);
            M::decode(convert::loaded_request_from_v1(&r).encode_to_vec().as_slice()).unwrap_or_default()
        })
    } else {
        M::decode(body)
    };
    let Ok(mut c) = decoded else { return };
    c.normalize(from);
    let mut twice = c.clone();
    twice.normalize(from);
    assert_eq!(twice, c, "normalize is not idempotent");
    assert!(c.for_version(Version::V3).is_none(), "the canonical shape is v3's: no copy for v3");
    check_package::<M, P1>(&c, Version::V1);
    check_package::<M, P2>(&c, Version::V2);
    check_package::<M, P3>(&c, Version::V3);
}

/// v1's text uptime: parsing never panics, and a parsed value formats back to itself.
fn check_uptime(r: &v1::ProviderLoadedRequest) {
    let Some(b) = &r.broker else { return };
    if let Some(ms) = convert::parse_uptime_text(&b.uptime) {
        let canonical = ms.max(0) / 1000 * 1000;
        assert_eq!(convert::parse_uptime_text(&convert::uptime_text(ms)), Some(canonical), "uptime {:?}", b.uptime);
    }
}
