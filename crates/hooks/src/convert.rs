//! The real differences between the three packages, and how the gateway maps them.
//!
//! | difference | v1 (4.x) | v2 (5.0–5.8) | v3 (5.9+) | gateway |
//! |---|---|---|---|---|
//! | `BrokerInfo.uptime` | text ("1 hours, 2 minutes, 3 seconds") | ms (int64) | ms | parsed / formatted; unreadable text → 0, reported ([`ConversionIssue::Uptime`]) |
//! | `BrokerInfo.datetime` | local `YYYY-MM-DD HH:MM:SS` | RFC 3339 | RFC 3339 | passed as text unchanged |
//! | `ConnInfo.peerport`, `ClientInfo.peerport` | absent | 5.4+ | yes | dropped for v1 |
//! | `TopicFilter` | `qos=2` | `subopts=3` (5.0–5.3: `qos=2`) | `subopts=3` | `qos` ⇄ `subopts.qos` |
//! | shared subscription in `session.subscribed` | `topic` + `SubOpts.share` | `$share/g/t` (5.0–5.3: `share`) | `$share/g/t` | joined / split |
//! | MQTT User-Property (connect, connack, subscribe, unsubscribe) | one `props` entry `User-Property`, an Erlang term | same as v1 | `user_props` pairs | parsed ⇄ formatted ([`user_property`]); unparseable → left in `props`, reported ([`ConversionIssue::UserProperty`]) |
//! | publish `props`, `user_props` | absent | absent | yes | dropped for v1/v2 |
//!
//! The canonical (internal) shape is v3's. Conversions are pure and allocation-free unless a
//! field really changes. What a caller sent that cannot be converted is passed on as received
//! (or as a neutral value) and reported as a [`ConversionIssue`], never an error: EMQX's call
//! is still served.

use exhook_proto::model::{self, ClientInfo, ConnInfo, Property, SubOpts, TopicFilter};
use exhook_proto::v1;

use crate::{Hook, Version};

pub mod user_property;

pub use user_property::{ParseUserPropertyError, USER_PROPERTY, format_user_property, parse_user_property};

/// Something in a caller's request that could not be converted to the canonical (v3) shape.
/// The call is still served: the part is passed on as received, or as a neutral value. The
/// server counts it (label [`ConversionIssue::as_str`]) and logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConversionIssue {
    /// A v1/v2 caller's `props` entry `User-Property` is not the Erlang term EMQX prints (see
    /// [`parse_user_property`]): it stays in `props` unchanged, and v3 providers get no
    /// `user_props` from it.
    #[error("a User-Property entry in props is not the Erlang term EMQX prints; passed on unchanged in props")]
    UserProperty,
    /// A v1 caller's `BrokerInfo.uptime` is not EMQX 4.x's uptime text: passed on as 0 ms.
    #[error("BrokerInfo.uptime is not EMQX 4.x's uptime text; passed on as 0 ms")]
    Uptime,
}

impl ConversionIssue {
    /// Every issue, for pre-registering metric series.
    pub const ALL: [ConversionIssue; 2] = [ConversionIssue::UserProperty, ConversionIssue::Uptime];

    /// A short stable name, for a metric label: `user_property`, `uptime`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConversionIssue::UserProperty => "user_property",
            ConversionIssue::Uptime => "uptime",
        }
    }
}

pub(crate) fn clientinfo_differs(c: Option<&ClientInfo>, to: Version) -> bool {
    to == Version::V1 && c.is_some_and(|c| c.peerport != 0)
}

pub(crate) fn reshape_clientinfo(c: Option<&mut ClientInfo>, to: Version) {
    if let (Version::V1, Some(c)) = (to, c) {
        c.peerport = 0;
    }
}

pub(crate) fn conninfo_differs(c: Option<&ConnInfo>, to: Version) -> bool {
    to == Version::V1 && c.is_some_and(|c| c.peerport != 0)
}

pub(crate) fn reshape_conninfo(c: Option<&mut ConnInfo>, to: Version) {
    if let (Version::V1, Some(c)) = (to, c) {
        c.peerport = 0;
    }
}

/// v1 (and 5.0–5.3) carry the subscription QoS in `TopicFilter.qos`; 5.4+ in `subopts.qos`.
pub(crate) fn normalize_topic_filters(filters: &mut [TopicFilter], from: Version, hook: Hook) {
    for f in filters {
        let legacy = f.qos != 0 || (from == Version::V1 && hook == Hook::ClientSubscribe);
        if legacy && f.subopts.is_none() {
            f.subopts = Some(SubOpts { qos: f.qos, ..Default::default() });
        }
        f.qos = 0;
    }
}

pub(crate) fn topic_filters_differ(filters: &[TopicFilter], to: Version) -> bool {
    to == Version::V1 && filters.iter().any(|f| f.subopts.is_some())
}

pub(crate) fn reshape_topic_filters(filters: &mut [TopicFilter], to: Version) {
    if to == Version::V1 {
        for f in filters {
            if let Some(s) = f.subopts.take() {
                f.qos = s.qos;
            }
        }
    }
}

/// v1/v2 callers put User-Property in `props` as one Erlang-term string; the canonical shape
/// (v3, e5.9's `format_props/1`) has the pairs in `user_props`, in order, after any already
/// there, and no such entry in `props`. Every `User-Property` entry is read (EMQX sends at most
/// one); one that does not parse stays in `props` and is reported.
pub(crate) fn normalize_user_props(
    props: &mut Vec<Property>,
    user_props: &mut Vec<Property>,
    from: Version,
) -> Option<ConversionIssue> {
    if from == Version::V3 || !props.iter().any(|p| p.name == USER_PROPERTY) {
        return None;
    }
    let mut issue = None;
    props.retain(|p| {
        if p.name != USER_PROPERTY {
            return true;
        }
        match parse_user_property(&p.value) {
            Ok(pairs) => {
                user_props.extend(pairs);
                false
            }
            Err(_) => {
                issue = Some(ConversionIssue::UserProperty);
                true
            }
        }
    });
    issue
}

pub(crate) fn user_props_differ(user_props: &[Property], to: Version) -> bool {
    to != Version::V3 && !user_props.is_empty()
}

/// For a v1/v2 provider, `user_props` become one `props` entry `User-Property`, printed as EMQX
/// 4.3/5.0–5.8 print it ([`format_user_property`]). EMQX builds `props` with `maps:fold`,
/// prepending, over a map whose atom keys (OTP ≤ 25) iterate in name order, so `props` come
/// in descending name order; the entry goes where that order puts it (it carries no meaning).
pub(crate) fn reshape_user_props(props: &mut Vec<Property>, user_props: &mut Vec<Property>, to: Version) {
    if !user_props_differ(user_props, to) {
        return;
    }
    let entry = Property { name: USER_PROPERTY.to_owned(), value: format_user_property(user_props) };
    user_props.clear();
    let at = props.iter().position(|p| p.name.as_str() < USER_PROPERTY).unwrap_or(props.len());
    props.insert(at, entry);
}

/// MessagePublishRequest has no `props` or `user_props` before v3 (e5.9 added both): a v1/v2
/// provider cannot be given them.
pub(crate) fn publish_props_differ(props: &[Property], user_props: &[Property], to: Version) -> bool {
    to != Version::V3 && !(props.is_empty() && user_props.is_empty())
}

pub(crate) fn reshape_publish_props(props: &mut Vec<Property>, user_props: &mut Vec<Property>, to: Version) {
    if to != Version::V3 {
        props.clear();
        user_props.clear();
    }
}

const SHARE_PREFIX: &str = "$share/";

/// 4.x (and 5.0–5.3) send a shared subscription as the bare topic plus `SubOpts.share`;
/// 5.4+ send the full `$share/<group>/<topic>`.
pub(crate) fn normalize_shared_topic(topic: &mut String, subopts: &mut Option<SubOpts>, _from: Version) {
    if let Some(s) = subopts.as_mut().filter(|s| !s.share.is_empty()) {
        let group = std::mem::take(&mut s.share);
        if !topic.starts_with(SHARE_PREFIX) {
            *topic = format!("{SHARE_PREFIX}{group}/{topic}");
        }
    }
}

pub(crate) fn shared_topic_differs(topic: &str, to: Version) -> bool {
    to == Version::V1 && split_shared(topic).is_some()
}

pub(crate) fn reshape_shared_topic(topic: &mut String, subopts: &mut Option<SubOpts>, to: Version) {
    if to != Version::V1 {
        return;
    }
    if let Some((group, rest)) = split_shared(topic) {
        let (group, rest) = (group.to_owned(), rest.to_owned());
        subopts.get_or_insert_with(SubOpts::default).share = group;
        *topic = rest;
    }
}

/// Splits `$share/<group>/<topic>` into its group and topic.
pub fn split_shared(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(SHARE_PREFIX)?;
    let (group, t) = rest.split_once('/')?;
    (!group.is_empty() && !t.is_empty()).then_some((group, t))
}

/// Formats milliseconds of uptime the way EMQX 4.x reports it in `BrokerInfo.uptime`.
pub fn uptime_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} days, {h} hours, {m} minutes, {s} seconds")
    } else {
        format!("{h} hours, {m} minutes, {s} seconds")
    }
}

/// Parses EMQX 4.x's uptime text ("1 days, 2 hours, 3 minutes, 4 seconds") into
/// milliseconds; `None` if it is not in that form.
pub fn parse_uptime_text(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut any = false;
    for part in text.split(',') {
        let mut words = part.split_whitespace();
        let n: i64 = words.next()?.parse().ok()?;
        let unit = match words.next()?.trim_end_matches('s') {
            "day" => 86_400,
            "hour" => 3600,
            "minute" => 60,
            "second" => 1,
            _ => return None,
        };
        if words.next().is_some() {
            return None;
        }
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    any.then(|| total.saturating_mul(1000))
}

/// Re-encodes a message as another message type with the same wire layout.
fn transcode<A: prost::Message, B: prost::Message + Default>(a: &A) -> B {
    // Both types come from the same field tables (checked by exhook-proto's descriptor
    // test), so decoding cannot fail; fall back to the default rather than panic.
    B::decode(a.encode_to_vec().as_slice()).unwrap_or_default()
}

/// A 4.x `ProviderLoadedRequest` (string uptime) into the model; an uptime that is not 4.x's
/// text becomes 0. [`loaded_request_from_v1_checked`] also says when that happened.
pub fn loaded_request_from_v1(r: &v1::ProviderLoadedRequest) -> model::ProviderLoadedRequest {
    loaded_request_from_v1_checked(r).0
}

/// A 4.x `ProviderLoadedRequest` (string uptime) into the model, with
/// [`ConversionIssue::Uptime`] when the uptime is not 4.x's text (it becomes 0).
pub fn loaded_request_from_v1_checked(
    r: &v1::ProviderLoadedRequest,
) -> (model::ProviderLoadedRequest, Option<ConversionIssue>) {
    let mut issue = None;
    let broker = r.broker.as_ref().map(|b| model::BrokerInfo {
        version: b.version.clone(),
        sysdescr: b.sysdescr.clone(),
        uptime: parse_uptime_text(&b.uptime).unwrap_or_else(|| {
            issue = Some(ConversionIssue::Uptime);
            0
        }),
        datetime: b.datetime.clone(),
    });
    (model::ProviderLoadedRequest { broker, meta: r.meta.as_ref().map(transcode) }, issue)
}

/// The model's `ProviderLoadedRequest` for a 4.x provider (uptime as text).
pub fn loaded_request_to_v1(r: &model::ProviderLoadedRequest) -> v1::ProviderLoadedRequest {
    v1::ProviderLoadedRequest {
        broker: r.broker.as_ref().map(|b| v1::BrokerInfo {
            version: b.version.clone(),
            sysdescr: b.sysdescr.clone(),
            uptime: uptime_text(b.uptime),
            datetime: b.datetime.clone(),
        }),
        meta: r.meta.as_ref().map(transcode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_round_trip() {
        assert_eq!(uptime_text(0), "0 hours, 0 minutes, 0 seconds");
        assert_eq!(uptime_text(3_723_000), "1 hours, 2 minutes, 3 seconds");
        assert_eq!(uptime_text(90_061_000), "1 days, 1 hours, 1 minutes, 1 seconds");
        for ms in [0, 1000, 3_723_000, 90_061_000, 86_400_000 * 400] {
            assert_eq!(parse_uptime_text(&uptime_text(ms)), Some(ms));
        }
        assert_eq!(parse_uptime_text("0 hours, 0 minutes, 0 seconds"), Some(0));
        assert_eq!(parse_uptime_text("5 seconds"), Some(5000));
        assert_eq!(parse_uptime_text(""), None);
        assert_eq!(parse_uptime_text("soon"), None);
        assert_eq!(parse_uptime_text("3 fortnights"), None);
        assert_eq!(parse_uptime_text("99999999999999999 days"), None);
    }

    #[test]
    fn loaded_request_conversion() {
        let v1 = v1::ProviderLoadedRequest {
            broker: Some(v1::BrokerInfo {
                version: "4.4.19".into(),
                sysdescr: "EMQX".into(),
                uptime: "1 hours, 0 minutes, 2 seconds".into(),
                datetime: "2026-11-22 03:29:10".into(),
            }),
            meta: Some(v1::RequestMeta { cluster_name: "c".into(), ..Default::default() }),
        };
        let (m, issue) = loaded_request_from_v1_checked(&v1);
        assert_eq!(issue, None);
        assert_eq!(m.broker.as_ref().unwrap().uptime, 3_602_000);
        assert_eq!(m.meta.as_ref().unwrap().cluster_name, "c");
        assert_eq!(loaded_request_to_v1(&m), v1);
        assert_eq!(loaded_request_from_v1(&v1), m);
    }

    #[test]
    fn unreadable_uptime_is_reported() {
        for text in ["", "soon", "1 hour and a bit", "-"] {
            let v1 = v1::ProviderLoadedRequest {
                broker: Some(v1::BrokerInfo { uptime: text.into(), ..Default::default() }),
                meta: None,
            };
            let (m, issue) = loaded_request_from_v1_checked(&v1);
            assert_eq!(issue, Some(ConversionIssue::Uptime), "{text:?}");
            assert_eq!(m.broker.unwrap().uptime, 0);
        }
        // No BrokerInfo at all: nothing to read, nothing to report.
        assert_eq!(loaded_request_from_v1_checked(&v1::ProviderLoadedRequest::default()).1, None);
        assert_eq!(ConversionIssue::ALL.map(ConversionIssue::as_str), ["user_property", "uptime"]);
    }

    #[test]
    fn split_shared_topics() {
        assert_eq!(split_shared("$share/g/a/b"), Some(("g", "a/b")));
        assert_eq!(split_shared("$share//a"), None);
        assert_eq!(split_shared("$share/g"), None);
        assert_eq!(split_shared("a/b"), None);
    }
}
