//! Replays the shared EMQX-shaped sample sessions (`proto/contract/sample-session-v{1,2,3}.jsonl`, copied from the shared contract)
//! through the gateway, using the fixtures — not our own reading of the proto — as the truth.
//!
//! Requests are built from the fixtures' protobuf JSON with prost-reflect against the gateway's
//! own descriptor set, sent as raw bytes on each package's gRPC path, and what the provider
//! receives is decoded with prost-reflect again and compared as messages.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use common::TestGateway;
use exhook_hooks::{Hook, HookKind, Version};
use exhook_proto::model;
use exhook_sim::{Call, EmqxClient, Reply, SimProvider};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, ReflectMessage, Value};
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures and dynamic messages
// ---------------------------------------------------------------------------------------------

/// One fixture line: one RPC of an EMQX session.
#[derive(Debug, Clone)]
struct Line {
    rpc: String,
    hook: Hook,
    request: Json,
    response: Json,
}

fn contract_dir() -> PathBuf {
    let dir = std::env::var_os("EXHOOK_CONTRACT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/contract")));
    assert!(
        dir.join("sample-session-v1.jsonl").is_file(),
        "EMQX contract fixtures not found in {} (set EXHOOK_CONTRACT_DIR)",
        dir.display()
    );
    dir
}

/// The sample session of `version`'s package, in order.
fn session(version: Version) -> Vec<Line> {
    let path = contract_dir().join(format!("sample-session-{}.jsonl", version.as_str()));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let lines: Vec<Line> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let j: Json = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let rpc = j["rpc"].as_str().unwrap_or_else(|| panic!("{}:{}: no rpc", path.display(), i + 1)).to_owned();
            assert_eq!(j["status"], "OK", "{}:{}: only OK lines are expected", path.display(), i + 1);
            let hook = Hook::from_rpc(version, &rpc).unwrap_or_else(|| {
                panic!("{}:{}: {rpc} is not an RPC of {}", path.display(), i + 1, version.package())
            });
            Line { rpc, hook, request: j["request"].clone(), response: j["response"].clone() }
        })
        .collect();
    assert!(!lines.is_empty(), "{} is empty", path.display());
    lines
}

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(exhook_proto::FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes"));

/// The RPC `hook` of `version`'s `HookProvider`.
fn method(version: Version, hook: Hook) -> MethodDescriptor {
    let service = POOL.get_service_by_name(version.service()).unwrap_or_else(|| panic!("no {}", version.service()));
    let rpc = hook.rpc(version);
    service.methods().find(|m| m.name() == rpc).unwrap_or_else(|| panic!("no {}.{rpc}", version.service()))
}

fn input(version: Version, hook: Hook) -> MessageDescriptor {
    method(version, hook).input()
}

fn output(version: Version, hook: Hook) -> MessageDescriptor {
    method(version, hook).output()
}

/// Protobuf JSON → wire bytes of `desc`.
fn json_to_bytes(desc: &MessageDescriptor, j: &Json) -> Bytes {
    DynamicMessage::deserialize(desc.clone(), j.clone())
        .unwrap_or_else(|e| panic!("{} from JSON {j}: {e}", desc.full_name()))
        .encode_to_vec()
        .into()
}

/// Wire bytes → `desc`.
fn decode(desc: &MessageDescriptor, bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(desc.clone(), bytes).unwrap_or_else(|e| panic!("decoding {}: {e}", desc.full_name()))
}

/// Protobuf JSON → `desc`, through the wire (so it compares with anything decoded from bytes).
fn from_json(desc: &MessageDescriptor, j: &Json) -> DynamicMessage {
    decode(desc, &json_to_bytes(desc, j))
}

/// A prost message (the model) re-read as `desc` (same wire layout).
fn transcode<M: prost::Message>(desc: &MessageDescriptor, m: &M) -> DynamicMessage {
    decode(desc, &m.encode_to_vec())
}

/// Asserts two messages are equal; on failure shows both as protobuf JSON (readable, unlike
/// `DynamicMessage`'s `Debug`, which prints the descriptors).
#[track_caller]
fn assert_msg_eq(got: &DynamicMessage, want: &DynamicMessage, what: &str) {
    if got != want {
        let show = |m: &DynamicMessage| serde_json::to_string(m).unwrap_or_else(|e| format!("<{e}>"));
        panic!("{what}\n   got: {}\n  want: {}", show(got), show(want));
    }
}

/// The value at a dotted path (`clientinfo.peerport`); `None` if a field does not exist in the
/// message type or an intermediate message is unset.
fn get(m: &DynamicMessage, path: &str) -> Option<Value> {
    let mut cur = m.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        cur.descriptor().get_field_by_name(part)?;
        if parts.peek().is_none() {
            return Some(cur.get_field_by_name(part)?.into_owned());
        }
        if !cur.has_field_by_name(part) {
            return None;
        }
        match cur.get_field_by_name(part)?.into_owned() {
            Value::Message(next) => cur = next,
            _ => return None,
        }
    }
    None
}

fn enum_number(desc: &MessageDescriptor, field: &str, name: &str) -> i32 {
    let kind = desc.get_field_by_name(field).unwrap_or_else(|| panic!("{}.{field}", desc.full_name())).kind();
    let e = kind.as_enum().unwrap_or_else(|| panic!("{}.{field} is not an enum", desc.full_name()));
    e.get_value_by_name(name).unwrap_or_else(|| panic!("{}.{name}", e.full_name())).number()
}

/// `ValuedResponse{type: IGNORE}` (no value) of `version`'s package.
fn ignore_answer(version: Version, hook: Hook) -> DynamicMessage {
    from_json(&output(version, hook), &json!({ "type": "IGNORE" }))
}

/// What one EMQX-facing exhook server answering `response` makes of it, as the gateway must
/// answer when it is the only provider: a CONTINUE/STOP_AND_RETURN with a value of the hook's
/// kind is passed on; anything else (IGNORE, no value, wrong kind) means IGNORE.
fn single_server_answer(version: Version, hook: Hook, response: &Json) -> DynamicMessage {
    let desc = output(version, hook);
    let r = from_json(&desc, response);
    let ty = match r.get_field_by_name("type").map(|v| v.into_owned()) {
        Some(Value::EnumNumber(n)) => n,
        other => panic!("ValuedResponse.type: {other:?}"),
    };
    let value_field = if hook == Hook::MessagePublish { "message" } else { "bool_result" };
    let usable = (ty == enum_number(&desc, "type", "CONTINUE") || ty == enum_number(&desc, "type", "STOP_AND_RETURN"))
        && r.has_field_by_name(value_field);
    if usable {
        let mut want = DynamicMessage::new(desc.clone());
        want.set_field_by_name("type", Value::EnumNumber(ty));
        want.set_field_by_name(value_field, r.get_field_by_name(value_field).expect("value").into_owned());
        decode(&desc, &want.encode_to_vec())
    } else {
        ignore_answer(version, hook)
    }
}

/// The hooks (name, sorted topics) of a `LoadedResponse`.
fn hook_specs(r: &model::LoadedResponse) -> BTreeSet<(String, Vec<String>)> {
    r.hooks
        .iter()
        .map(|h| {
            let mut t = h.topics.clone();
            t.sort();
            (h.name.clone(), t)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

/// What the gateway answers a replayed line with, for the caller to check.
enum Answer {
    Loaded(model::LoadedResponse),
    Valued(DynamicMessage),
    Empty,
}

/// Sends one fixture line to the gateway as `caller` (raw bytes from the fixture's JSON).
async fn send(emqx: &EmqxClient, caller: Version, line: &Line) -> Answer {
    let body = json_to_bytes(&input(caller, line.hook), &line.request);
    let what = format!("{} {} through the gateway", caller.as_str(), line.rpc);
    match (line.hook, line.hook.kind()) {
        (Hook::ProviderLoaded, _) => Answer::Loaded(
            emqx.call_raw::<model::LoadedResponse>(line.hook, body).await.unwrap_or_else(|e| panic!("{what}: {e}")),
        ),
        (_, HookKind::Valued) => {
            let r = emqx.call_raw::<model::ValuedResponse>(line.hook, body).await;
            Answer::Valued(transcode(&output(caller, line.hook), &r.unwrap_or_else(|e| panic!("{what}: {e}"))))
        }
        _ => {
            emqx.call_raw::<model::EmptySuccess>(line.hook, body).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            Answer::Empty
        }
    }
}

/// Asserts the gateway's `LoadedResponse` lists exactly the fixture response's hooks.
fn assert_loaded(caller: Version, line: &Line, got: &model::LoadedResponse) {
    let want: model::LoadedResponse =
        prost::Message::decode(json_to_bytes(&output(caller, line.hook), &line.response)).expect("LoadedResponse");
    assert_eq!(
        hook_specs(got),
        hook_specs(&want),
        "{}: OnProviderLoaded: the gateway must list exactly the fixture's hooks (in the {} spelling)",
        caller.as_str(),
        caller.package()
    );
}

/// Waits until the provider has received, for every hook of the session, as many calls as
/// the session has lines of it (notifications and Unloaded arrive in the background), and
/// returns them per hook, in arrival order.
async fn received(provider: &SimProvider, lines: &[Line]) -> HashMap<Hook, Vec<Call>> {
    let mut counts: HashMap<Hook, usize> = HashMap::new();
    for l in lines {
        *counts.entry(l.hook).or_default() += 1;
    }
    let mut out = HashMap::new();
    for (hook, n) in counts {
        let calls = provider.wait_for(hook, n, WAIT).await;
        assert!(calls.len() >= n, "provider got {} {hook} call(s), the session has {n}", calls.len());
        out.insert(hook, calls);
    }
    out
}

/// For each fixture line, the call the provider received for it: the i-th line of a hook
/// ↔ the i-th call of that hook. OnProviderLoaded: the last one (EMQX's; a background
/// load with the gateway's own broker info may precede it).
fn pair_calls<'a>(lines: &'a [Line], calls: &'a HashMap<Hook, Vec<Call>>) -> Vec<(&'a Line, &'a Call)> {
    let mut seen: HashMap<Hook, usize> = HashMap::new();
    lines
        .iter()
        .map(|l| {
            let all = &calls[&l.hook];
            let call = if l.hook == Hook::ProviderLoaded {
                all.last().expect("an OnProviderLoaded call")
            } else {
                let i = seen.entry(l.hook).or_default();
                *i += 1;
                assert_eq!(all.len(), lines.iter().filter(|x| x.hook == l.hook).count(), "{} call count", l.rpc);
                &all[*i - 1]
            };
            (l, call)
        })
        .collect()
}

fn gateway_config(provider: &SimProvider, protocol: Version) -> String {
    common::provider("p", &provider.url(), protocol.as_str(), "2s", "deny")
}

// ---------------------------------------------------------------------------------------------
// 1. Same package: lossless forwarding, answers as from a single EMQX-facing server
// ---------------------------------------------------------------------------------------------

/// The provider's reply to `call`: the fixture response of the line whose request it is.
fn fixture_reply(version: Version, lines: &[(Line, DynamicMessage)], call: &Call) -> Reply {
    let got = decode(&input(version, call.hook), &call.body);
    let line = lines.iter().find(|(l, req)| l.hook == call.hook && *req == got).map(|(l, _)| l);
    let line = match (line, call.hook) {
        (Some(l), _) => l,
        // Answer anyway so that the provider loads; the request itself is checked afterwards.
        (None, Hook::ProviderLoaded) => &lines.iter().find(|(l, _)| l.hook == Hook::ProviderLoaded).expect("loaded").0,
        (None, _) => {
            return Reply::Status(tonic::Status::internal(format!("no fixture line has this {} request", call.hook)));
        }
    };
    let body = json_to_bytes(&output(version, line.hook), &line.response);
    match (line.hook, line.hook.kind()) {
        (Hook::ProviderLoaded, _) => Reply::Loaded(prost::Message::decode(body).expect("LoadedResponse")),
        (_, HookKind::Valued) => Reply::Valued(prost::Message::decode(body).expect("ValuedResponse")),
        _ => Reply::Empty,
    }
}

async fn replay_same_package(version: Version) {
    let lines = session(version);
    let indexed: Arc<Vec<(Line, DynamicMessage)>> =
        Arc::new(lines.iter().map(|l| (l.clone(), from_json(&input(version, l.hook), &l.request))).collect());
    let provider = SimProvider::builder(version)
        .all_hooks()
        .script({
            let indexed = Arc::clone(&indexed);
            move |call| fixture_reply(version, &indexed, call)
        })
        .start()
        .await
        .expect("provider");
    let gw = TestGateway::start(&gateway_config(&provider, version)).await;
    let emqx = gw.emqx(version).await;

    for line in &lines {
        match send(&emqx, version, line).await {
            Answer::Loaded(got) => assert_loaded(version, line, &got),
            Answer::Valued(got) => {
                let want = single_server_answer(version, line.hook, &line.response);
                let what = format!(
                    "{} {}: the gateway's answer must be the fixture provider's answer as one EMQX-facing server gives it",
                    version.as_str(),
                    line.rpc
                );
                assert_msg_eq(&got, &want, &what);
            }
            Answer::Empty => {}
        }
    }

    let calls = received(&provider, &lines).await;
    for (line, call) in pair_calls(&lines, &calls) {
        assert_eq!(call.version, version);
        let desc = input(version, line.hook);
        let got = decode(&desc, &call.body);
        let want = from_json(&desc, &line.request);
        let what = format!("{} {}: the provider must receive EMQX's request unchanged", version.as_str(), line.rpc);
        assert_msg_eq(&got, &want, &what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_same_package_v1() {
    replay_same_package(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_same_package_v2() {
    replay_same_package(Version::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_same_package_v3() {
    replay_same_package(Version::V3).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Cross package: the documented mapping
// ---------------------------------------------------------------------------------------------

/// EMQX 4.x's uptime text ("[D days, ]H hours, M minutes, S seconds") → ms.
fn uptime_text_to_ms(text: &str) -> i64 {
    text.split(',')
        .map(|part| {
            let mut w = part.split_whitespace();
            let n: i64 = w.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("uptime {text:?}"));
            let unit = match w.next() {
                Some("days") => 86_400,
                Some("hours") => 3600,
                Some("minutes") => 60,
                Some("seconds") => 1,
                other => panic!("uptime {text:?}: unit {other:?}"),
            };
            n * unit * 1000
        })
        .sum()
}

/// ms → EMQX 4.x's uptime text.
fn uptime_ms_to_text(ms: i64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} days, {h} hours, {m} minutes, {s} seconds")
    } else {
        format!("{h} hours, {m} minutes, {s} seconds")
    }
}

fn json_i64(j: &Json) -> i64 {
    match j {
        Json::String(s) => s.parse().unwrap_or_else(|_| panic!("int64 {s:?}")),
        Json::Number(n) => n.as_i64().expect("int64"),
        Json::Null => 0,
        other => panic!("int64 {other}"),
    }
}

/// A request of `from`'s package (protobuf JSON) as the documented mapping delivers it to a
/// provider of `to`'s package.
fn translate(from: Version, to: Version, hook: Hook, request: &Json) -> Json {
    let mut j = request.clone();
    let obj = j.as_object_mut().expect("request is an object");
    if to == Version::V1 {
        for info in ["conninfo", "clientinfo"] {
            if let Some(Json::Object(i)) = obj.get_mut(info) {
                i.remove("peerport");
            }
        }
    }
    if to != Version::V3 {
        // 5.0–5.8 (and 4.3) carry User-Property as ONE props entry, the pairs printed by
        // Erlang's ~0p (`[{<<"k">>,<<"v">>}]`), in EMQX's props order (descending by name).
        let pairs = obj.remove("user_props").and_then(|v| v.as_array().cloned()).unwrap_or_default();
        if hook == Hook::MessagePublish {
            obj.remove("props");
        } else if !pairs.is_empty() {
            let quoted =
                |v: &Json| v.as_str().expect("ascii in the samples").replace('\\', "\\\\").replace('"', "\\\"");
            let terms: Vec<String> = pairs
                .iter()
                .map(|p| format!("{{<<\"{}\">>,<<\"{}\">>}}", quoted(&p["name"]), quoted(&p["value"])))
                .collect();
            let entry = json!({ "name": "User-Property", "value": format!("[{}]", terms.join(",")) });
            let props = obj.entry("props").or_insert_with(|| json!([])).as_array_mut().expect("props list");
            let at = props
                .iter()
                .position(|p| p["name"].as_str().is_some_and(|n| n < "User-Property"))
                .unwrap_or(props.len());
            props.insert(at, entry);
        }
    }
    if matches!(hook, Hook::ClientSubscribe | Hook::ClientUnsubscribe)
        && let Some(Json::Array(filters)) = obj.get_mut("topic_filters")
    {
        for f in filters.iter_mut().filter_map(Json::as_object_mut) {
            if from == Version::V1 && to != Version::V1 {
                let qos = f.remove("qos");
                if hook == Hook::ClientSubscribe || qos.as_ref().is_some_and(|q| json_i64(q) != 0) {
                    f.insert("subopts".into(), json!({ "qos": qos.unwrap_or(json!(0)) }));
                }
            } else if from != Version::V1
                && to == Version::V1
                && let Some(subopts) = f.remove("subopts")
                && let Some(qos) = subopts.get("qos")
            {
                f.insert("qos".into(), qos.clone());
            }
        }
    }
    if hook == Hook::ProviderLoaded
        && let Some(Json::Object(broker)) = obj.get_mut("broker")
        && (from == Version::V1) != (to == Version::V1)
    {
        let uptime = broker.remove("uptime").unwrap_or(Json::Null);
        if to == Version::V1 {
            broker.insert("uptime".into(), json!(uptime_ms_to_text(json_i64(&uptime))));
        } else {
            let text = uptime.as_str().unwrap_or("0 seconds");
            broker.insert("uptime".into(), json!(uptime_text_to_ms(text).to_string()));
        }
    }
    j
}

/// Explicit checks of the mapping's points on what a provider of `to` received (the full
/// comparison with [`translate`] follows; these make a failure say which point broke).
fn check_mapping(from: Version, to: Version, line: &Line, got: &DynamicMessage) {
    let ctx = format!("{} {} → {} provider", from.as_str(), line.rpc, to.as_str());
    let sent = from_json(&input(from, line.hook), &line.request);
    // Identity fields are carried unchanged.
    for path in [
        "conninfo.clientid",
        "conninfo.username",
        "clientinfo.clientid",
        "clientinfo.username",
        "topic",
        "message.topic",
        "message.payload",
        "message.qos",
        "message.id",
    ] {
        if let Some(want) = get(&sent, path) {
            assert_eq!(get(got, path), Some(want), "{ctx}: {path}");
        }
    }
    // peerport: dropped for v1 (4.x has none), kept otherwise.
    for path in ["conninfo.peerport", "clientinfo.peerport"] {
        let want = if to == Version::V1 { None } else { get(&sent, path).filter(|v| *v != Value::U32(0)) };
        let have = get(got, path).filter(|v| *v != Value::U32(0));
        assert_eq!(have, want, "{ctx}: {path}");
    }
    // user_props: only v3 has them.
    let sent_props = get(&sent, "user_props").and_then(|v| v.as_list().map(<[Value]>::to_vec)).unwrap_or_default();
    let have_props = get(got, "user_props").and_then(|v| v.as_list().map(<[Value]>::to_vec)).unwrap_or_default();
    if to == Version::V3 {
        assert_eq!(have_props.len(), sent_props.len(), "{ctx}: user_props");
    } else {
        assert!(have_props.is_empty(), "{ctx}: user_props must be dropped for {}", to.as_str());
    }
    // TopicFilter QoS: `qos` (2) for v1, `subopts.qos` for v2/v3.
    if line.hook == Hook::ClientSubscribe {
        let filters = line.request["topic_filters"].as_array().expect("topic_filters");
        let got_filters = got.get_field_by_name("topic_filters").expect("topic_filters").into_owned();
        let got_filters = got_filters.as_list().expect("list");
        assert_eq!(got_filters.len(), filters.len(), "{ctx}: topic_filters");
        for (f, g) in filters.iter().zip(got_filters) {
            let want_qos = if from == Version::V1 { &f["qos"] } else { &f["subopts"]["qos"] };
            let want_qos = Value::U32(u32::try_from(json_i64(want_qos)).expect("qos"));
            let g = g.as_message().expect("TopicFilter");
            if to == Version::V1 {
                assert_eq!(get(g, "qos"), Some(want_qos), "{ctx}: TopicFilter.qos");
                assert!(get(g, "subopts").is_none(), "{ctx}: a v1 TopicFilter has no subopts");
            } else {
                assert_eq!(get(g, "subopts.qos"), Some(want_qos), "{ctx}: TopicFilter.subopts.qos");
                assert!(get(g, "qos").is_none(), "{ctx}: TopicFilter.qos is reserved in {}", to.as_str());
            }
        }
    }
    // BrokerInfo.uptime: text for v1, milliseconds for v2/v3.
    if line.hook == Hook::ProviderLoaded {
        let uptime = &line.request["broker"]["uptime"];
        let ms = if from == Version::V1 { uptime_text_to_ms(uptime.as_str().expect("text")) } else { json_i64(uptime) };
        let want = if to == Version::V1 { Value::String(uptime_ms_to_text(ms)) } else { Value::I64(ms) };
        assert_eq!(get(got, "broker.uptime"), Some(want), "{ctx}: BrokerInfo.uptime");
    }
}

async fn replay_cross(caller: Version, target: Version) {
    let lines = session(caller);
    let provider = SimProvider::builder(target).all_hooks().start().await.expect("provider");
    let gw = TestGateway::start(&gateway_config(&provider, target)).await;
    let emqx = gw.emqx(caller).await;

    for line in &lines {
        match send(&emqx, caller, line).await {
            Answer::Loaded(got) => assert_loaded(caller, line, &got),
            Answer::Valued(got) => {
                let what = format!(
                    "{} {} → {} provider answering IGNORE: the gateway must answer IGNORE without a value",
                    caller.as_str(),
                    line.rpc,
                    target.as_str()
                );
                assert_msg_eq(&got, &ignore_answer(caller, line.hook), &what);
            }
            Answer::Empty => {}
        }
    }

    let calls = received(&provider, &lines).await;
    for (line, call) in pair_calls(&lines, &calls) {
        assert_eq!(call.version, target);
        let desc = input(target, line.hook);
        let got = decode(&desc, &call.body);
        check_mapping(caller, target, line, &got);
        let want = from_json(&desc, &translate(caller, target, line.hook, &line.request));
        let what = format!(
            "{} {} → {} provider: the request must arrive translated by the documented mapping",
            caller.as_str(),
            line.rpc,
            target.as_str()
        );
        assert_msg_eq(&got, &want, &what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_cross_package() {
    for caller in common::ALL_VERSIONS {
        for target in common::ALL_VERSIONS {
            if caller != target {
                replay_cross(caller, target).await;
            }
        }
    }
}

#[test]
fn uptime_mapping_examples() {
    // The contract's examples, checked against this file's own mapping helpers.
    assert_eq!(uptime_ms_to_text(7), "0 hours, 0 minutes, 0 seconds");
    assert_eq!(uptime_text_to_ms("0 hours, 0 minutes, 0 seconds"), 0);
    assert_eq!(uptime_text_to_ms("1 hours, 2 minutes, 3 seconds"), 3_723_000);
    assert_eq!(uptime_ms_to_text(90_061_000), "1 days, 1 hours, 1 minutes, 1 seconds");
}
