//! User-Property between packages: v1/v2 callers and providers carry it as one `props` entry
//! (an Erlang term, as EMQX 4.3/5.0–5.8 print it), v3 ones as `user_props` pairs.

use exhook_hooks::convert::{USER_PROPERTY, format_user_property, parse_user_property};
use exhook_hooks::{ConversionIssue, HookRequest, Version};
use exhook_proto::model::{
    ClientConnackRequest, ClientConnectRequest, ClientSubscribeRequest, ClientUnsubscribeRequest, Message,
    MessagePublishRequest, Property,
};
use proptest::prelude::*;

fn prop(name: &str, value: &str) -> Property {
    Property { name: name.into(), value: value.into() }
}

/// The four requests with both `props` and `user_props` in v3 and `props` in v1/v2.
trait Props: HookRequest + PartialEq + std::fmt::Debug {
    fn with(props: Vec<Property>, user_props: Vec<Property>) -> Self;
    fn props(&self) -> &[Property];
    fn user_props(&self) -> &[Property];
}

macro_rules! props_requests {
    ($($ty:ident),*) => {$(
        impl Props for $ty {
            fn with(props: Vec<Property>, user_props: Vec<Property>) -> Self {
                $ty { props, user_props, ..Default::default() }
            }
            fn props(&self) -> &[Property] {
                &self.props
            }
            fn user_props(&self) -> &[Property] {
                &self.user_props
            }
        }
    )*};
}

props_requests!(ClientConnectRequest, ClientConnackRequest, ClientSubscribeRequest, ClientUnsubscribeRequest);

/// Runs `check` for every request type that converts User-Property.
macro_rules! for_each_props_request {
    ($check:ident) => {
        $check::<ClientConnectRequest>();
        $check::<ClientConnackRequest>();
        $check::<ClientSubscribeRequest>();
        $check::<ClientUnsubscribeRequest>();
    };
}

/// A CONNECT with Session-Expiry-Interval and three user properties (one name twice), as EMQX
/// 5.8 on OTP 25 sends it: `props` in descending name order (maps:fold prepending over the
/// property map), the pairs as `stringfy/1` prints them.
fn v2_props() -> Vec<Property> {
    vec![
        prop(
            USER_PROPERTY,
            r#"[{<<"app">>,<<"Ã©clair, \"v2\"">>},{<<"trace">>,<<226,130,172>>},{<<"app">>,<<"b\\c">>}]"#,
        ),
        prop("Session-Expiry-Interval", "100"),
    ]
}

fn pairs() -> Vec<Property> {
    vec![prop("app", "éclair, \"v2\""), prop("trace", "€"), prop("app", "b\\c")]
}

#[test]
fn v2_caller_to_v3_provider() {
    fn check<R: Props>() {
        let mut r = R::with(v2_props(), vec![]);
        assert_eq!(r.normalize(Version::V2), None);
        // The canonical shape is v3's, as e5.9 sends it: pairs in order, gone from props.
        assert_eq!(r.user_props(), pairs());
        assert_eq!(r.props(), [prop("Session-Expiry-Interval", "100")]);
        assert!(r.for_version(Version::V3).is_none());
        // Idempotent.
        let again = r.clone();
        assert_eq!(r.normalize(Version::V2), None);
        assert_eq!(r, again);
    }
    for_each_props_request!(check);
}

#[test]
fn v2_caller_to_v2_provider_is_byte_identical() {
    fn check<R: Props>() {
        let mut r = R::with(v2_props(), vec![]);
        let _ = r.normalize(Version::V2);
        let v2 = r.for_version(Version::V2).expect("user_props go back into props");
        assert_eq!(v2, R::with(v2_props(), vec![]));
    }
    for_each_props_request!(check);
}

#[test]
fn v3_caller_to_v2_and_v1_providers() {
    fn check<R: Props>() {
        let mut r = R::with(
            vec![
                prop("Topic-Alias-Maximum", "5"),
                prop("Session-Expiry-Interval", "100"),
                prop("Receive-Maximum", "32"),
            ],
            pairs(),
        );
        assert_eq!(r.normalize(Version::V3), None);
        for to in [Version::V2, Version::V1] {
            let shaped = r.for_version(to).expect("a copy for v1/v2");
            assert!(shaped.user_props().is_empty(), "{to}");
            // Where EMQX 5.8 (OTP 25) would have put it: descending name order.
            assert_eq!(
                shaped.props(),
                [
                    prop(USER_PROPERTY, &format_user_property(&pairs())),
                    prop("Topic-Alias-Maximum", "5"),
                    prop("Session-Expiry-Interval", "100"),
                    prop("Receive-Maximum", "32"),
                ],
                "{to}"
            );
            assert_eq!(
                shaped.props()[0].value,
                r#"[{<<"app">>,<<"Ã©clair, \"v2\"">>},{<<"trace">>,<<226,130,172>>},{<<"app">>,<<"b\\c">>}]"#
            );
            // And a v1/v2 provider's view read back by the gateway is the request again.
            let mut back = shaped.clone();
            assert_eq!(back.normalize(to), None);
            assert_eq!(back, r, "{to}");
        }
        // A name sorting after User-Property keeps its place before it.
        let r = R::with(vec![prop("Wildcard-Subscription-Available", "1"), prop("Maximum-QoS", "1")], pairs());
        let names: Vec<_> = r.for_version(Version::V2).unwrap().props().iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["Wildcard-Subscription-Available", USER_PROPERTY, "Maximum-QoS"]);
    }
    for_each_props_request!(check);
}

#[test]
fn v1_caller_as_v2() {
    // 4.3's handler printed props exactly as 5.0–5.8 do.
    fn check<R: Props>() {
        let mut r = R::with(v2_props(), vec![]);
        assert_eq!(r.normalize(Version::V1), None);
        assert_eq!(r.user_props(), pairs());
        assert_eq!(r.for_version(Version::V1).map(|c| c.props().to_vec()), Some(v2_props()));
    }
    for_each_props_request!(check);
}

#[test]
fn unparseable_user_property_stays_and_is_reported() {
    fn check<R: Props>() {
        for bad in ["", "[{k,v}]", "#{<<\"k\">> => <<\"v\">>}", "[{<<\"k\">>,<<\"v\">>}", "[{<<255>>,<<\"v\">>}]"] {
            let props = vec![prop(USER_PROPERTY, bad), prop("Session-Expiry-Interval", "100")];
            let mut r = R::with(props.clone(), vec![]);
            assert_eq!(r.normalize(Version::V2), Some(ConversionIssue::UserProperty), "{bad:?}");
            assert_eq!(r.props(), props, "{bad:?}");
            assert!(r.user_props().is_empty());
            // Passed on as received, to every package.
            assert!(r.for_version(Version::V3).is_none());
            assert!(r.for_version(Version::V2).is_none());
            assert_eq!(r.normalize(Version::V2), Some(ConversionIssue::UserProperty), "reported again");
        }
    }
    for_each_props_request!(check);
}

#[test]
fn empty_list_and_v3_callers() {
    fn check<R: Props>() {
        // `'User-Property' => []`: no pairs; e5.9 would send neither the entry nor user_props.
        let mut r = R::with(vec![prop(USER_PROPERTY, "[]")], vec![]);
        assert_eq!(r.normalize(Version::V2), None);
        assert_eq!(r, R::with(vec![], vec![]));
        assert!(r.for_version(Version::V2).is_none());
        // A v3 caller's props are never read as User-Property text.
        let mut r = R::with(vec![prop(USER_PROPERTY, "[]")], vec![]);
        assert_eq!(r.normalize(Version::V3), None);
        assert_eq!(r.props(), [prop(USER_PROPERTY, "[]")]);
    }
    for_each_props_request!(check);
}

#[test]
fn publish_props_have_no_place_before_v3() {
    // MessagePublishRequest is `message=1, meta=2` in v1 and v2 (e5.9 added props/user_props).
    let r = MessagePublishRequest {
        message: Some(Message { topic: "t".into(), ..Default::default() }),
        props: vec![prop("Message-Expiry-Interval", "300")],
        user_props: pairs(),
        ..Default::default()
    };
    for to in [Version::V1, Version::V2] {
        let shaped = r.for_version(to).unwrap();
        assert!(shaped.props.is_empty() && shaped.user_props.is_empty(), "{to}");
        assert_eq!(shaped.message, r.message);
    }
    assert!(r.for_version(Version::V3).is_none());
    let only_user = MessagePublishRequest { user_props: pairs(), ..Default::default() };
    assert!(only_user.for_version(Version::V2).unwrap().user_props.is_empty());
    let mut n = r.clone();
    assert_eq!(n.normalize(Version::V2), None);
    assert_eq!(n, r);
}

fn any_pairs() -> impl Strategy<Value = Vec<Property>> {
    // Any Unicode text, control characters, quotes and backslashes included.
    let text = prop_oneof![any::<String>(), "[\\\\\"<>{},\\[\\]\u{0}-\u{1f}\u{7f}-\u{ff}a-z]{0,12}"];
    proptest::collection::vec((text.clone(), text).prop_map(|(n, v)| Property { name: n, value: v }), 0..6)
}

proptest! {
    #[test]
    fn format_then_parse_is_identity(pairs in any_pairs()) {
        let text = format_user_property(&pairs);
        prop_assert_eq!(parse_user_property(&text), Ok(pairs));
    }

    #[test]
    fn v3_to_v2_and_back(pairs in any_pairs()) {
        let r = ClientConnectRequest { props: vec![prop("Session-Expiry-Interval", "1")], user_props: pairs, ..Default::default() };
        let mut back = r.for_version(Version::V2).unwrap_or_else(|| r.clone());
        prop_assert_eq!(back.normalize(Version::V2), None);
        prop_assert_eq!(back, r);
    }

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse_user_property(&text);
    }

    #[test]
    fn parse_never_panics_on_near_terms(text in "[\\[\\]{}<>\",/\\\\0-9a-z\\^ \n]{0,40}") {
        if let Ok(pairs) = parse_user_property(&text) {
            // Whatever parses formats to a canonical spelling of the same term.
            prop_assert_eq!(parse_user_property(&format_user_property(&pairs)), Ok(pairs));
        }
    }
}
