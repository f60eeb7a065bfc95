//! `server`: the EMQX-facing service of each package, driven in-process with raw bodies.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use exhook_config::Config;
use exhook_hooks::{Hook, HookKind, Version};
use exhook_proto::model::{EmptySuccess, LoadedResponse, ValuedResponse};
use exhook_server::observe::{CallEvent, StepEvent};
use exhook_server::{Gateway, Observer, PackageV1, PackageV2, PackageV3};
use exhook_sim::{Reply, SimProvider};
use http_body_util::{BodyExt, Full};
use prost::Message;
use tower::Service;

use crate::types::with_request_types;

/// Whether a body of several messages must be refused like any other malformed body. tonic's
/// unary server decodes the first message and drains (decodes and drops) the rest, and its
/// decoder ends cleanly on a last prefix whose payload never came: such a body reached the
/// provider with its first message (bug 2 in docs/fuzzing.md) until the service refused
/// bytes after the one message. `true`: the target demands the refusal.
pub const STRICT_SINGLE_MESSAGE: bool = true;

/// `server.max_request_bytes` of the harness: the smallest allowed, so that the fuzzer reaches
/// the refusal at the length prefix (and of a body carrying more than it announced).
const MAX_REQUEST_BYTES: usize = 1024;

/// `grpc-timeout` values byte 2 can pick (index 0: no header; 6 and 7: taken from the input).
const TIMEOUTS: [&str; 6] = ["", "5S", "1n", "99999999H", "100m", "0m"];
/// `grpc-encoding` values (index 0: no header).
const ENCODINGS: [&str; 4] = ["", "identity", "gzip", "x-bogus"];

/// The RPC name byte 1 picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// One of the package's 21 RPCs.
    Known(Hook),
    /// The name the other EMQX line uses for `client.authorize` (not an RPC of this package).
    Foreign,
    /// An empty method name.
    Empty,
    /// A name no package has.
    Bogus,
}

/// One `server` input, decoded from the fuzz bytes:
/// `package rpc flags [timeout_len timeout_bytes] body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInput {
    /// The package whose service is called (byte 0, mod 3).
    pub package: Version,
    /// The method (byte 1, mod 24: 0–20 the RPCs, 21 foreign, 22 empty, 23 bogus).
    pub rpc: Rpc,
    /// The `grpc-timeout` header (byte 2 mod 8; 6 and 7 read a length byte and that many
    /// bytes, at most 15, from the input).
    pub timeout: Option<Vec<u8>>,
    /// The `grpc-encoding` header (byte 2 / 8, mod 4).
    pub encoding: Option<&'static str>,
    /// The request body.
    pub body: Vec<u8>,
}

impl ServerInput {
    /// Reads an input; `None` if it is too short to say which call it is.
    pub fn parse(data: &[u8]) -> Option<ServerInput> {
        let [package, rpc, flags, rest @ ..] = data else { return None };
        let package = Version::from_index(usize::from(*package) % 3)?;
        let rpc = match usize::from(*rpc) % 24 {
            i if i < Hook::ALL.len() => Rpc::Known(Hook::ALL[i]),
            21 => Rpc::Foreign,
            22 => Rpc::Empty,
            _ => Rpc::Bogus,
        };
        let (timeout, rest) = match usize::from(*flags) % 8 {
            0 => (None, rest),
            i if i < TIMEOUTS.len() => (Some(TIMEOUTS[i].as_bytes().to_vec()), rest),
            _ => {
                let (&len, rest) = rest.split_first()?;
                let n = usize::from(len % 16).min(rest.len());
                (Some(rest[..n].to_vec()), &rest[n..])
            }
        };
        let encoding = match usize::from(*flags / 8) % 4 {
            0 => None,
            i => Some(ENCODINGS[i]),
        };
        Some(ServerInput { package, rpc, timeout, encoding, body: rest.to_vec() })
    }

    /// The bytes of a call of `hook` in `package`, with `grpc-timeout: 5S`, no encoding, and
    /// `body` as the HTTP body (the inverse of [`ServerInput::parse`] for seeds).
    pub fn encode(package: Version, hook: Hook, body: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(package.index()).unwrap_or(0), u8::try_from(hook.index()).unwrap_or(0), 1];
        out.extend_from_slice(body);
        out
    }

    fn path(&self) -> String {
        let method = match self.rpc {
            Rpc::Known(h) => h.rpc(self.package),
            Rpc::Foreign if self.package == Version::V1 => "OnClientAuthorize",
            Rpc::Foreign => "OnClientCheckAcl",
            Rpc::Empty => "",
            Rpc::Bogus => "OnNothing",
        };
        format!("/{}/{method}", self.package.service())
    }
}

/// Counts what reaches the chain: one `call` per EMQX call answered by the executor, one
/// `step` per provider turn.
#[derive(Debug, Default)]
struct Counting {
    calls: AtomicU64,
    steps: AtomicU64,
}

impl Observer for Counting {
    fn step(&self, _event: &StepEvent<'_>) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }
    fn call(&self, _event: &CallEvent<'_>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    gateway: Gateway,
    observer: Arc<Counting>,
    /// Hook calls (all but the two lifecycle RPCs, which the gateway also makes on its own,
    /// in the background) the provider received.
    provider_calls: Arc<AtomicU64>,
    /// Keeps the provider serving.
    _provider: SimProvider,
    /// One input at a time: the counters are compared before and after.
    lock: Mutex<()>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // One current-thread runtime for every input: the provider's server and the gateway's
        // connection tasks run while an input's call is driven, and sleep in between.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let observer = Arc::new(Counting::default());
        let provider_calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&provider_calls);
        let (gateway, provider) = rt.block_on(async {
            let provider = SimProvider::builder(Version::V3)
                .all_hooks()
                .record(false)
                .script(move |call| {
                    if call.hook.kind() != HookKind::Lifecycle {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Reply::Default
                })
                .start()
                .await
                .expect("a loopback provider");
            // after-delivery: every notification is delivered inside the call that caused
            // it, so the counters are settled when the answer is.
            let toml = format!(
                "[server]\nmax_request_bytes = {MAX_REQUEST_BYTES}\n[admin]\nenabled = false\n[[providers]]\nname = \"sim\"\nurl = \"{}\"\nprotocol = \"v3\"\n\
                 timeout = \"5s\"\nfailed_action = \"ignore\"\nnotify = \"after-delivery\"\n",
                provider.url(),
            );
            let config = Config::parse(&toml, Path::new("<fuzz>")).expect("the harness config is valid");
            let observer: Arc<dyn Observer> = Arc::clone(&observer) as Arc<dyn Observer>;
            let gateway = Gateway::new(config, observer).expect("gateway");
            let p = gateway.provider("sim").expect("provider sim");
            let request = exhook_sim::sample::loaded_request(Version::V3, "");
            p.load(&request, Duration::from_secs(10)).await.expect("the loopback provider loads");
            (gateway, provider)
        });
        Harness { rt, gateway, observer, provider_calls, _provider: provider, lock: Mutex::new(()) }
    })
}

/// What the gateway makes of `body` for `hook` in `package`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyShape {
    /// Exactly one uncompressed message that decodes as the gateway's type.
    One,
    /// One such message followed by more decodable messages, and perhaps a last prefix whose
    /// payload is missing: tonic's unary server drains the rest and serves the first.
    Several,
    /// More than `server.max_request_bytes`, announced or sent: `RESOURCE_EXHAUSTED`.
    TooLarge,
    /// Anything else.
    Malformed,
}

// The table passes all four request types; only the model's and v1's are the gateway's.
#[allow(clippy::extra_unused_type_parameters)]
fn decodes<M: Message + Default, P1: Message + Default, P2, P3>(package: Version, hook: Hook, msg: &[u8]) -> bool {
    if hook == Hook::ProviderLoaded && package == Version::V1 {
        // v1's OnProviderLoaded is decoded as the v1 type (its uptime is text).
        P1::decode(msg).is_ok()
    } else {
        M::decode(msg).is_ok()
    }
}

fn shape(package: Version, hook: Hook, body: &[u8]) -> BodyShape {
    // The limit applies to the first prefix's length and to the data sent, before decoding.
    let announced = body.get(1..5).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if announced.is_some_and(|n| n > MAX_REQUEST_BYTES) || body.len() > MAX_REQUEST_BYTES + 5 {
        return BodyShape::TooLarge;
    }
    let mut rest = body;
    let mut count = 0;
    while !rest.is_empty() {
        let Some((header, after)) = rest.split_first_chunk::<5>() else { return BodyShape::Malformed };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != 0 || len > MAX_REQUEST_BYTES {
            return BodyShape::Malformed;
        }
        if after.is_empty() && len > 0 && count > 0 {
            // A last prefix without any of its payload: tonic's decoder has consumed the
            // prefix and finds nothing left to complain about at the end of the body.
            return BodyShape::Several;
        }
        if after.len() < len || !with_request_types!(hook, decodes(package, hook, &after[..len])) {
            return BodyShape::Malformed;
        }
        count += 1;
        rest = &after[len..];
    }
    match count {
        0 => BodyShape::Malformed,
        1 => BodyShape::One,
        _ => BodyShape::Several,
    }
}

/// The gRPC status of an answer: from the headers (trailers-only) or the trailers.
fn grpc_status(headers: &http::HeaderMap, trailers: Option<&http::HeaderMap>) -> Option<i32> {
    let value = headers.get("grpc-status").or_else(|| trailers.and_then(|t| t.get("grpc-status")))?;
    value.to_str().ok()?.parse().ok()
}

fn reply_decodes(hook: Hook, body: &Bytes) -> bool {
    let Ok(msg) = exhook_proto::codec::decode_unary_frame(body, usize::MAX) else { return false };
    match hook.kind() {
        HookKind::Valued => ValuedResponse::decode(msg).is_ok(),
        HookKind::Lifecycle if hook == Hook::ProviderLoaded => LoadedResponse::decode(msg).is_ok(),
        _ => EmptySuccess::decode(msg).is_ok(),
    }
}

pub(crate) fn run(data: &[u8]) {
    run_with(data, STRICT_SINGLE_MESSAGE)
}

/// [`crate::server`], with the several-messages check on (`strict`) or off.
pub fn run_with(data: &[u8], strict: bool) {
    let Some(input) = ServerInput::parse(data) else { return };
    let mut request = http::Request::builder()
        .method("POST")
        .uri(input.path())
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = input.timeout.as_deref().and_then(|t| http::HeaderValue::from_bytes(t).ok()) {
        request = request.header("grpc-timeout", t);
    }
    if let Some(e) = input.encoding {
        request = request.header("grpc-encoding", e);
    }
    let Ok(request) = request.body(Full::new(Bytes::from(input.body.clone()))) else { return };

    let h = harness();
    let _one_at_a_time = h.lock.lock().unwrap_or_else(|e| e.into_inner());
    let before = (h.observer.calls.load(Ordering::Relaxed), h.observer.steps.load(Ordering::Relaxed));
    let provider_before = h.provider_calls.load(Ordering::Relaxed);
    let (parts, body) = h.rt.block_on(async {
        let response = match input.package {
            Version::V1 => h.gateway.hook_service::<PackageV1>().call(request).await,
            Version::V2 => h.gateway.hook_service::<PackageV2>().call(request).await,
            Version::V3 => h.gateway.hook_service::<PackageV3>().call(request).await,
        };
        let Ok(response) = response;
        let (parts, body) = response.into_parts();
        (parts, body.collect().await)
    });
    let reached_chain = h.observer.calls.load(Ordering::Relaxed) - before.0;
    let steps = h.observer.steps.load(Ordering::Relaxed) - before.1;
    let reached_provider = h.provider_calls.load(Ordering::Relaxed) - provider_before;

    let (trailers, reply) = match body {
        Ok(collected) => (collected.trailers().cloned(), collected.to_bytes()),
        Err(status) => panic!("the answer's body failed: {status:?}"),
    };
    assert_eq!(parts.status, http::StatusCode::OK, "gRPC answers are HTTP 200");
    let status = grpc_status(&parts.headers, trailers.as_ref())
        .unwrap_or_else(|| panic!("no grpc-status in {:?} / {trailers:?}", parts.headers));
    assert!((0..=16).contains(&status), "grpc-status {status} is not a gRPC code");

    let Rpc::Known(hook) = input.rpc else {
        assert_eq!(status, tonic::Code::Unimplemented as i32, "{}: unknown methods are UNIMPLEMENTED", input.path());
        assert_eq!((reached_chain, steps, reached_provider), (0, 0, 0), "an unknown method reached a provider");
        return;
    };
    let encoding_ok = matches!(input.encoding, None | Some("identity"));
    let shape = if encoding_ok { shape(input.package, hook, &input.body) } else { BodyShape::Malformed };
    match shape {
        BodyShape::One => {
            assert_eq!(status, 0, "{}: one valid message must be answered OK", input.path());
            assert!(reply_decodes(hook, &reply), "{}: the reply is not one {hook} answer", input.path());
            if hook.kind() != HookKind::Lifecycle {
                assert_eq!(reached_chain, 1, "{}: a valid call runs the chain once", input.path());
            }
        }
        BodyShape::Several if !strict => {}
        BodyShape::Several | BodyShape::Malformed | BodyShape::TooLarge => {
            if shape == BodyShape::TooLarge {
                assert_eq!(status, tonic::Code::ResourceExhausted as i32, "{}: an oversized body", input.path());
            }
            assert_ne!(status, 0, "{}: a malformed body {:?} was answered OK", input.path(), input.body);
            assert_eq!(
                (reached_chain, steps, reached_provider),
                (0, 0, 0),
                "{}: a malformed body {:?} reached the chain or the provider",
                input.path(),
                input.body
            );
        }
    }
}
