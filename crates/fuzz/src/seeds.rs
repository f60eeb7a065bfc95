//! The seed corpus: every request and reply of the contract's sample sessions
//! (`proto/contract/sample-session-v{1,2,3}.jsonl`) in each target's input format,
//! `config/gateway.toml`, and a few hand-picked `grpc-timeout` values and topic filters.
//!
//! `cargo run -p exhook-fuzz --bin exhook-fuzz-seeds` writes it to `fuzz/corpus/<target>/`;
//! the smoke test checks the checked-in files are what this module builds.

use std::path::{Path, PathBuf};

use exhook_hooks::{Hook, HookKind, Version};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::Value as Json;

use crate::replies::ReplyKind;
use crate::requests::selector;
use crate::server_target::ServerInput;

/// Why the seed corpus could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A session line is not what the contract describes.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The session file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The gateway's descriptor set does not decode (a build problem).
    #[error("descriptor set: {0}")]
    Descriptors(String),
}

/// One corpus file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The target (`fuzz/corpus/<target>/`).
    pub target: &'static str,
    /// The file name.
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The workspace root (where `proto/`, `config/` and `fuzz/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `fuzz/corpus/<target>` under `root`.
pub fn corpus_dir(root: &Path, target: &str) -> PathBuf {
    root.join("fuzz/corpus").join(target)
}

/// Wraps a message in a gRPC frame (uncompressed).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// `grpc-timeout` values: every unit, the extremes, and the malformed shapes EMQX never sends.
const TIMEOUTS: [&str; 16] = [
    "5S",
    "300m",
    "1H",
    "2M",
    "100u",
    "99999999n",
    "99999999H",
    "00000000m",
    "",
    "S",
    "5",
    "5s",
    "123456789S",
    "-1S",
    "1.5S",
    "5 S",
];

/// `User-Property` values as EMQX 4.3 and 5.0–5.8 print them (`~0p` of the pair list).
const USER_PROPERTIES: [&str; 4] = [
    "[{<<\"app\">>,<<\"emqx_sim\">>}]",
    "[{<<\"a\">>,<<\"b\">>},{<<\"k\">>,<<1,2,255>>}]",
    "[{<<\"q\\\"x\">>,<<\"\\n\">>},{<<>>,<<>>}]",
    "[{<<\"a\">>,",
];

/// Filters tried against each sample topic.
const FILTERS: [&str; 8] = ["#", "+", "+/#", "a/+/c", "$SYS/#", "t/#", "sensor/+/temp", "a/#/b"];

struct Line {
    hook: Hook,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SeedError + '_ {
    move |source| SeedError::Read { path: path.to_owned(), source }
}

fn encode(desc: &MessageDescriptor, json: &Json) -> Result<Vec<u8>, String> {
    use prost::Message as _;
    DynamicMessage::deserialize(desc.clone(), json.clone())
        .map(|m| m.encode_to_vec())
        .map_err(|e| format!("{} from JSON: {e}", desc.full_name()))
}

fn session(root: &Path, pool: &DescriptorPool, version: Version) -> Result<Vec<Line>, SeedError> {
    let path = root.join(format!("proto/contract/sample-session-{}.jsonl", version.as_str()));
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let service = pool
        .get_service_by_name(version.service())
        .ok_or_else(|| SeedError::Descriptors(format!("no service {}", version.service())))?;
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fail = |reason: String| SeedError::Line { path: path.clone(), line: i + 1, reason };
        let j: Json = serde_json::from_str(l).map_err(|e| fail(e.to_string()))?;
        let rpc = j["rpc"].as_str().ok_or_else(|| fail("no rpc".into()))?;
        let hook = Hook::from_rpc(version, rpc).ok_or_else(|| fail(format!("{rpc} is not an RPC")))?;
        let method = service.methods().find(|m| m.name() == rpc).ok_or_else(|| fail(format!("no method {rpc}")))?;
        let request = encode(&method.input(), &j["request"]).map_err(fail)?;
        let response = encode(&method.output(), &j["response"]).map_err(fail)?;
        lines.push(Line { hook, request, response });
    }
    Ok(lines)
}

fn seed(target: &'static str, name: String, data: Vec<u8>) -> Seed {
    Seed { target, name, data }
}

/// Builds every target's seeds from the files under `root`.
pub fn build(root: &Path) -> Result<Vec<Seed>, SeedError> {
    let pool =
        DescriptorPool::decode(exhook_proto::FILE_DESCRIPTOR_SET).map_err(|e| SeedError::Descriptors(e.to_string()))?;
    let mut seeds = Vec::new();
    let mut topics = Vec::new();
    for version in Version::NEWEST_FIRST.into_iter().rev() {
        let v = version.as_str();
        let lines = session(root, &pool, version)?;
        let mut valued: Vec<(Hook, Vec<u8>)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let name = format!("{v}-{i:02}-{}", line.hook.rpc(version));
            let mut req = vec![selector(line.hook, version)];
            req.extend_from_slice(&line.request);
            seeds.push(seed("requests", name.clone(), req));
            seeds.push(seed("server", name.clone(), ServerInput::encode(version, line.hook, &frame(&line.request))));
            let mut framed = vec![2]; // the default 4 MiB limit
            framed.extend_from_slice(&frame(&line.request));
            seeds.push(seed("grpc_frame", name.clone(), framed));
            let kind = match line.hook.kind() {
                HookKind::Valued => {
                    valued.push((line.hook, line.response.clone()));
                    ReplyKind::Valued(version, line.hook)
                }
                HookKind::Lifecycle if line.hook == Hook::ProviderLoaded => ReplyKind::Loaded(version),
                _ => ReplyKind::Empty(version),
            };
            let mut reply = vec![kind.selector()];
            if matches!(kind, ReplyKind::Valued(..)) {
                reply.push(u8::try_from(line.response.len()).unwrap_or(u8::MAX));
            }
            reply.extend_from_slice(&line.response);
            seeds.push(seed("replies", format!("{name}-reply"), reply));
            if let Ok(m) = <exhook_proto::model::MessagePublishRequest as prost::Message>::decode(&line.request[..])
                && line.hook == Hook::MessagePublish
                && let Some(msg) = m.message
            {
                topics.push(msg.topic);
            }
        }
        // Every valued reply of a session, one chain: the fold over several providers.
        for hook in [Hook::ClientAuthenticate, Hook::ClientAuthorize, Hook::MessagePublish] {
            let mut chain = vec![ReplyKind::Valued(version, hook).selector()];
            for (_, r) in valued.iter().filter(|(h, _)| *h == hook) {
                chain.push(u8::try_from(r.len()).unwrap_or(u8::MAX));
                chain.extend_from_slice(r);
            }
            seeds.push(seed("replies", format!("{v}-chain-{}", hook.name()), chain));
        }
    }
    // v1/v2 carry MQTT User-Property as one Erlang term in `props` (parsed by the gateway):
    // valid terms, escapes, non-printable binaries and a broken one, on connect and subscribe.
    for (i, term) in USER_PROPERTIES.iter().enumerate() {
        use prost::Message as _;
        let props = vec![exhook_proto::model::Property { name: "User-Property".into(), value: (*term).into() }];
        let connect = exhook_proto::model::ClientConnectRequest { props: props.clone(), ..Default::default() };
        let subscribe = exhook_proto::model::ClientSubscribeRequest {
            props,
            topic_filters: vec![exhook_proto::model::TopicFilter { name: "t/#".into(), qos: 1, subopts: None }],
            ..Default::default()
        };
        for version in [Version::V1, Version::V2] {
            for (hook, body) in
                [(Hook::ClientConnect, connect.encode_to_vec()), (Hook::ClientSubscribe, subscribe.encode_to_vec())]
            {
                let name = format!("{}-user-property-{i}-{}", version.as_str(), hook.rpc(version));
                let mut req = vec![selector(hook, version)];
                req.extend_from_slice(&body);
                seeds.push(seed("requests", name.clone(), req));
                seeds.push(seed("server", name, ServerInput::encode(version, hook, &frame(&body))));
            }
        }
    }
    for (i, t) in TIMEOUTS.iter().enumerate() {
        seeds.push(seed("grpc_timeout", format!("timeout-{i:02}"), t.as_bytes().to_vec()));
    }
    // The frame target's error paths, one each.
    for (name, body) in [
        ("empty", vec![2]),
        ("compressed", vec![2, 1, 0, 0, 0, 0]),
        ("flag", vec![2, 7, 0, 0, 0, 0]),
        ("truncated", vec![2, 0, 0, 0, 0, 3, 1]),
        ("oversized", vec![4, 0, 0, 0, 0, 2, 8, 1]),
        ("trailing", vec![2, 0, 0, 0, 0, 0, 9]),
        ("two-frames", [vec![2], frame(&[8, 1]), frame(&[8, 1])].concat()),
    ] {
        seeds.push(seed("grpc_frame", format!("error-{name}"), body));
    }
    topics.sort();
    topics.dedup();
    topics.extend(["$SYS/broker/uptime", "a//c", ""].map(String::from));
    for (i, t) in topics.iter().enumerate() {
        let mut text = FILTERS.join("\n");
        text.push('\n');
        text.push_str(t);
        seeds.push(seed("topic", format!("topic-{i:02}"), text.into_bytes()));
    }
    let path = root.join("config/gateway.toml");
    let example = std::fs::read_to_string(&path).map_err(io(&path))?;
    seeds.push(seed("config", "gateway.toml".into(), example.into_bytes()));
    for (name, text) in CONFIGS {
        seeds.push(seed("config", format!("{name}.toml"), text.as_bytes().to_vec()));
    }
    Ok(seeds)
}

/// Small configurations reaching tenants, explicit chains and the validation errors.
const CONFIGS: [(&str, &str); 3] = [
    (
        "tenants",
        "[[providers]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\n[[providers]]\nname = \"b\"\nurls = [\"http://127.0.0.1:9002\", \"http://127.0.0.1:9003\"]\nprotocol = \"auto\"\nnotify = \"after-delivery\"\n[chains]\n\"client.authenticate\" = [\"a\", \"b\"]\n[[tenants]]\nname = \"t1\"\ncluster_names = [\"c1\"]\nproviders = [\"b\"]\nmax_inflight = 10\n[tenants.chains]\n\"message.publish\" = [\"b\"]\n",
    ),
    (
        "invalid",
        "[server]\nlisten = \"nowhere\"\ndefault_deadline = \"0s\"\n[[providers]]\nname = \"-bad\"\nurl = \"ftp://x\"\ntimeout = \"soon\"\nqueue_size = 0\n[chains]\n\"client.nope\" = [\"ghost\"]\n",
    ),
    ("syntax", "[server\nlisten = \"127.0.0.1:9000\"\n"),
];
