//! The driver: connects to a provider, finds its package, plays an EMQX session against it
//! and hands every exchange to the checks.
//!
//! One generic path for every RPC, as the gateway does: requests are built in the internal
//! model, shaped for the provider's package (`HookRequest::for_version`; v1's BrokerInfo by
//! hand) and sent pre-encoded on `Hook::path(version)`, each with `grpc-timeout` = the deadline,
//! as EMQX sends them. The wire bytes are exactly what the generated v1/v2/v3 clients would
//! send, without 63 per-RPC copies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use exhook_hooks::{Hook, Version};
use exhook_proto::codec::RawCodec;
use exhook_proto::model::{EmptySuccess, LoadedResponse, ValuedResponse};
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::check::{self, Answer, CheckId, Exchange, PackageProbe, Verdict};
use crate::report::Report;
use crate::samples;

/// EMQX's default `request_timeout` (contract §5): the deadline of every call unless told.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` (h2c) or `https://host:port` (TLS, ALPN h2, host name verified).
    pub url: String,
    /// The package to speak; `None`: detect it (`OnProviderLoaded` in v3, v2, v1 order).
    pub package: Option<Version>,
    /// The deadline of every call (EMQX's `request_timeout`).
    pub timeout: Duration,
    /// Trust anchors and client certificate for `https://` (ignored for `http://`).
    pub tls: TlsFiles,
}

impl Target {
    /// `url`, auto-detected package, EMQX's default deadline, system trust anchors.
    pub fn new(url: impl Into<String>) -> Target {
        Target { url: url.into(), package: None, timeout: DEFAULT_TIMEOUT, tls: TlsFiles::default() }
    }
}

/// PEM files for `https://` providers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust (`None`: the system's root store).
    pub ca: Option<PathBuf>,
    /// Client certificate chain (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    pub key: Option<PathBuf>,
}

/// Why a run could not start: the provider was not reached. (A provider that is reached but
/// answers wrongly is a [`Report`] with failures, not an error.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not `http://host:port` or `https://host:port`.
    #[error("invalid provider URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TLS file could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] exhook_tls::TlsError),
    /// No connection (refused, unreachable, TLS handshake failed, or timed out).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Runs every check against `target`: probes the package with `OnProviderLoaded`, validates
/// the hooks and filters it registers, drives each registered hook with a realistic request,
/// then `OnProviderUnloaded`.
pub async fn run(target: &Target) -> Result<Report, Error> {
    let channel = connect(target).await?;
    let caller = Caller { grpc: Grpc::new(channel), timeout: target.timeout };
    let mut report = Report {
        provider: target.url.clone(),
        package: None,
        timeout: target.timeout,
        hooks: Vec::new(),
        verdicts: Vec::new(),
    };

    // Package: the asked one first, then the others newest first (to say which it speaks).
    let mut order = Vec::from(Version::NEWEST_FIRST);
    if let Some(asked) = target.package {
        order.retain(|v| *v != asked);
        order.insert(0, asked);
    }
    let mut probe = PackageProbe { asked: target.package, unimplemented: Vec::new(), speaks: None };
    let mut loaded = None;
    for version in order {
        let exchange = caller.call::<LoadedResponse>(Hook::ProviderLoaded, version, samples::loaded(version)).await;
        match &exchange.answer {
            Answer::Error { code: tonic::Code::Unimplemented, message } => {
                probe.unimplemented.push((version, message.clone()));
            }
            Answer::Error { code: tonic::Code::Unavailable, message } if probe.unimplemented.is_empty() => {
                return Err(Error::Connect { url: target.url.clone(), reason: format!("UNAVAILABLE {message:?}") });
            }
            _ => {
                probe.speaks = Some(version);
                loaded = Some(exchange);
                break;
            }
        }
    }
    report.verdicts.push(check::package(&probe));
    let (Some(version), Some(loaded)) = (probe.speaks, loaded) else {
        report.verdicts.extend(check::skip_rest(CheckId::Package, "not run: no package answered"));
        return Ok(report);
    };
    report.package = Some(version);

    let loaded_verdict = check::provider_loaded(version, &loaded, target.timeout);
    let Answer::Loaded(response) = &loaded.answer else {
        report.verdicts.push(loaded_verdict);
        report.verdicts.extend(check::skip_rest(CheckId::ProviderLoaded, "not run: OnProviderLoaded failed"));
        return Ok(report);
    };
    report.verdicts.push(loaded_verdict);
    report.verdicts.push(check::topic_filters(response));

    let registered = check::registered(version, response);
    let hooks: Vec<Hook> = registered.iter().map(|(h, _)| *h).collect();
    let topic = |hook: Hook| {
        let (_, filters) = registered.iter().find(|(h, _)| *h == hook)?;
        let filter = filters.iter().find(|f| exhook_topic::validate_filter(f).is_ok())?;
        Some(samples::topic_for(filter))
    };
    let mut exchanges = Vec::new();
    for planned in samples::session(version, &hooks, topic) {
        if !report.hooks.contains(&planned.hook) {
            report.hooks.push(planned.hook);
        }
        let exchange = match planned.hook.kind() {
            exhook_hooks::HookKind::Valued => caller.call::<ValuedResponse>(planned.hook, version, planned.body).await,
            _ => caller.call::<EmptySuccess>(planned.hook, version, planned.body).await,
        };
        let exchange = exchange.about(planned.about);
        exchanges.push(match planned.message {
            Some(m) => exchange.with_message(m),
            None => exchange,
        });
    }
    let unloaded = caller.call::<EmptySuccess>(Hook::ProviderUnloaded, version, samples::unloaded(version)).await;

    let mut timed = vec![loaded.clone()];
    timed.extend(exchanges.iter().cloned());
    timed.push(unloaded.clone());
    report.verdicts.extend([
        check::valued_answers(&exchanges),
        check::value_kinds(&exchanges),
        check::message_kept(&exchanges),
        check::notifications(&exchanges),
        check::deadline(&timed, target.timeout),
        check::provider_unloaded(Some(&unloaded)),
    ]);
    debug_assert!(report.verdicts.iter().map(|v: &Verdict| v.check).eq(CheckId::ALL));
    Ok(report)
}

/// Sends requests the way EMQX does: unary, `grpc-timeout` set, one HTTP/2 connection.
struct Caller {
    grpc: Grpc<Channel>,
    timeout: Duration,
}

/// What an answer of type `D` becomes.
trait IntoAnswer {
    fn into_answer(self) -> Answer;
}

impl IntoAnswer for LoadedResponse {
    fn into_answer(self) -> Answer {
        Answer::Loaded(self)
    }
}

impl IntoAnswer for ValuedResponse {
    fn into_answer(self) -> Answer {
        Answer::Valued(self)
    }
}

impl IntoAnswer for EmptySuccess {
    fn into_answer(self) -> Answer {
        Answer::Empty
    }
}

impl Caller {
    async fn call<D>(&self, hook: Hook, version: Version, body: Bytes) -> Exchange
    where
        D: prost::Message + Default + Send + IntoAnswer + 'static,
    {
        let started = Instant::now();
        let mut grpc = self.grpc.clone();
        let call = async {
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(body);
            request.set_timeout(self.timeout);
            let path = http::uri::PathAndQuery::from_static(hook.path(version));
            grpc.unary(request, path, RawCodec::<D>::default()).await
        };
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => response.into_inner().into_answer(),
            // The provider's own server may give up at the deadline it was sent (tonic answers
            // CANCELLED "Timeout expired"): that is no answer within the deadline too.
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded || started.elapsed() >= self.timeout => {
                Answer::TimedOut
            }
            Ok(Err(status)) => Answer::Error { code: status.code(), message: status.message().to_owned() },
            Err(_) => Answer::TimedOut,
        };
        Exchange::new(hook, answer, started.elapsed()).in_package(version)
    }
}

async fn connect(target: &Target) -> Result<Channel, Error> {
    let url = &target.url;
    let bad = |reason: &str| Error::Url { url: url.clone(), reason: reason.to_owned() };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
    let unreachable =
        |e: &(dyn std::error::Error + 'static)| Error::Connect { url: url.clone(), reason: error_chain(e) };
    match uri.scheme_str() {
        Some("http") => {
            let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(&e.to_string()))?;
            let endpoint = endpoint.connect_timeout(target.timeout).tcp_nodelay(true);
            endpoint.connect().await.map_err(|e| unreachable(&e))
        }
        Some("https") => {
            let port = uri.port_u16().unwrap_or(443);
            let files = exhook_tls::ClientFiles {
                ca_file: target.tls.ca.clone(),
                cert_file: target.tls.cert.clone(),
                key_file: target.tls.key.clone(),
            };
            let config = Arc::new(exhook_tls::client_config(&files)?);
            let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = exhook_tls::ServerName::try_from(bare_host.clone()).map_err(|e| bad(&e.to_string()))?;
            let connector = exhook_tls::tokio_rustls::TlsConnector::from(config);
            let timeout = target.timeout;
            // The URI only names the connection for tonic; the connector dials host:port itself.
            let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
                .map_err(|e| bad(&e.to_string()))?
                .connect_timeout(timeout);
            endpoint
                .connect_with_connector(tower::service_fn(move |_uri| {
                    let (connector, name, host) = (connector.clone(), name.clone(), bare_host.clone());
                    async move {
                        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                        tcp.set_nodelay(true)?;
                        let tls = connector
                            .connect(name, tcp)
                            .await
                            .map_err(|e| std::io::Error::other(exhook_tls::describe_handshake_error(&e, &host)))?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                    }
                }))
                .await
                .map_err(|e| unreachable(&e))
        }
        _ => Err(bad("the scheme must be http:// or https://")),
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on their own).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}
