//! `exhook-gateway demo`: three of the Rust kit's example providers
//! (`exhook_provider::examples`, the code behind `cargo run -p exhook-provider --example NAME`),
//! each called by the gateway in the package of a different EMQX line, the gateway in front of
//! them, and a simulated EMQX session, all on loopback.
//!
//! | demo name | example | configured as | package |
//! |---|---|---|---|
//! | `denylist` | `deny_list` | `--deny mallory` | v3 (EMQX 5.9+) |
//! | `rewriter` | `payload_rewriter` | `--topic sensors/raw/#` | v2 (EMQX 5.0–5.8) |
//! | `audit` | `audit_log` | JSON lines into memory | v1 (EMQX 4.x) |
//!
//! The kit serves every package on one port; the `protocol` of each `[[providers]]` entry makes
//! the gateway call it in that one. Each runs inside a [`Witness`], which logs what the example
//! receives (at `debug`) and checks the password of every `client.authenticate`.
//!
//! The simulated clients authenticate with a password (`--password`): the gateway forwards it
//! to the providers, and the demo checks that the deny-list provider received it intact, but it
//! is never printed: the demo logs every request it sends and the providers' witnesses log what
//! they receive, and `ClientInfo`'s `Debug` redacts it. With `--admin`, the admin plane
//! (`/metrics`, `/api/v1/status`, the status page) serves the demo's gateway, which then stays
//! up after the session until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exhook_chain::Ending;
use exhook_config::Config;
use exhook_hooks::{Hook, Version};
use exhook_proto::Secret;
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_provider::examples::{audit_log::AuditLog, deny_list::DenyList, payload_rewriter::PayloadRewriter};
use exhook_provider::{Decision, Provider, Publish, RequestExt};
use exhook_server::observe::{CallEvent, Observer, StepEvent, StepResult};
use exhook_server::{Gateway, outcome_name};
use exhook_sim::EmqxClient;
use exhook_sim::sample::{self, meta};
use tokio::sync::oneshot;

/// Prints each provider's turn and each answer, as they happen.
struct Printer {
    names: Vec<(String, Version)>,
}

fn type_name(t: i32) -> &'static str {
    match ResponsedType::try_from(t) {
        Ok(ResponsedType::Continue) => "CONTINUE",
        Ok(ResponsedType::Ignore) => "IGNORE",
        Ok(ResponsedType::StopAndReturn) => "STOP_AND_RETURN",
        Err(_) => "?",
    }
}

fn show(r: &ValuedResponse) -> String {
    let value = match &r.value {
        None => String::new(),
        Some(Value::BoolResult(b)) => format!(" {b}"),
        Some(Value::Message(m)) => {
            format!(" topic={:?} payload={:?}", m.topic, String::from_utf8_lossy(&m.payload))
        }
    };
    format!("{}{value}", type_name(r.r#type))
}

impl Observer for Printer {
    fn wants_values(&self) -> bool {
        true
    }

    fn step(&self, e: &StepEvent<'_>) {
        if matches!(e.result, StepResult::SkippedNotRegistered) {
            return; // most providers register few hooks; the demo shows only those they did
        }
        let version = self.names.iter().find(|(n, _)| n == e.provider).map_or("", |(_, v)| v.as_str());
        let what = match &e.result {
            StepResult::SkippedNotLoaded => "skipped (not loaded)".to_owned(),
            StepResult::SkippedNotRegistered => "skipped (did not register this hook)".to_owned(),
            StepResult::SkippedFiltered => "skipped (topic filter does not match)".to_owned(),
            StepResult::Answered(o, r) => {
                format!("{:<40} -> {}", r.map(show).unwrap_or_default(), outcome_name(*o))
            }
            StepResult::Delivered => "delivered".to_owned(),
            StepResult::Queued => "queued for delivery".to_owned(),
            StepResult::Dropped => "DROPPED (queue full)".to_owned(),
            StepResult::Failed(err, o) => format!("failed: {err} -> {}", o.map(outcome_name).unwrap_or("counted")),
        };
        let took = if e.elapsed.is_zero() { String::new() } else { format!("  ({:.0?})", e.elapsed) };
        println!("    {:<10} [{version}] {what}{took}", e.provider);
    }

    fn call(&self, e: &CallEvent<'_>) {
        match e.valued {
            Some((r, ending)) => {
                let by = match ending {
                    Ending::AllIgnored => "no provider changed it: EMQX keeps its own value".to_owned(),
                    Ending::Continued => "folded across the chain".to_owned(),
                    Ending::StoppedBy(i) | Ending::DeniedByFailure(i) => format!("decided at chain position {i}"),
                };
                println!("  <= EMQX gets {}   ({by}; {:.0?})", show(r), e.elapsed);
            }
            None => println!("  <= EMQX gets EmptySuccess ({:.0?})", e.elapsed),
        }
    }
}

/// What the demo is asked to do.
pub struct Options {
    /// The package the simulated EMQX speaks.
    pub emqx: Version,
    /// The password every simulated client sends.
    pub password: Secret<String>,
    /// Serve the admin plane here, and stay up after the session.
    pub admin: Option<SocketAddr>,
}

fn client_info(clientid: &str, username: &str, password: &Secret<String>) -> Option<model::ClientInfo> {
    sample::client_info(clientid, username, password.expose())
}

fn message(topic: &str, payload: &str) -> Option<model::Message> {
    Some(sample::message("sensor-1", topic, payload))
}

/// An example provider as the demo runs it: every request is handed to the example unchanged;
/// the witness logs it first (at `debug`, where `ClientInfo`'s `Debug` redacts the password)
/// and, for `client.authenticate`, compares the password with the one the simulated EMQX sent.
/// It registers exactly what the example registers.
struct Witness<P> {
    name: &'static str,
    example: P,
    password: Secret<String>,
    seen: Arc<Seen>,
}

/// What a witness saw of the passwords.
#[derive(Default)]
struct Seen {
    authenticates: AtomicUsize,
    intact: AtomicUsize,
}

macro_rules! witnessed {
    ($( $method:ident($req:ident) $(-> $out:ty)?; )*) => {$(
        async fn $method(&self, request: &model::$req) $(-> $out)? {
            tracing::debug!(?request, "{} received", self.name);
            self.example.$method(request).await
        }
    )*};
}

impl<P: Provider> Provider for Witness<P> {
    const HOOKS: &'static [Hook] = P::HOOKS;

    fn topics(&self) -> Vec<String> {
        self.example.topics()
    }

    async fn client_authenticate(&self, request: &model::ClientAuthenticateRequest) -> Decision {
        tracing::debug!(?request, "{} received", self.name);
        self.seen.authenticates.fetch_add(1, Ordering::Relaxed);
        // Forwarded untouched by the gateway (only its text forms are redacted).
        if request.client().password == *self.password.expose() {
            self.seen.intact.fetch_add(1, Ordering::Relaxed);
        }
        self.example.client_authenticate(request).await
    }

    witnessed! {
        provider_loaded(ProviderLoadedRequest);
        provider_unloaded(ProviderUnloadedRequest);
        client_authorize(ClientAuthorizeRequest) -> Decision;
        message_publish(MessagePublishRequest) -> Publish;
        client_connect(ClientConnectRequest);
        client_connack(ClientConnackRequest);
        client_connected(ClientConnectedRequest);
        client_disconnected(ClientDisconnectedRequest);
        client_subscribe(ClientSubscribeRequest);
        client_unsubscribe(ClientUnsubscribeRequest);
        session_created(SessionCreatedRequest);
        session_subscribed(SessionSubscribedRequest);
        session_unsubscribed(SessionUnsubscribedRequest);
        session_resumed(SessionResumedRequest);
        session_discarded(SessionDiscardedRequest);
        session_takenover(SessionTakenoverRequest);
        session_terminated(SessionTerminatedRequest);
        message_delivered(MessageDeliveredRequest);
        message_dropped(MessageDroppedRequest);
        message_acked(MessageAckedRequest);
    }
}

/// The audit log's output: JSON lines, kept in memory for the demo to print.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// One example provider serving on a loopback port until the demo ends.
struct Running {
    url: String,
    seen: Arc<Seen>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), exhook_provider::ServeError>>,
}

impl Running {
    async fn start<P: Provider>(name: &'static str, example: P, password: &Secret<String>) -> anyhow::Result<Running> {
        let seen = Arc::new(Seen::default());
        let witness = Witness { name, example, password: password.clone(), seen: Arc::clone(&seen) };
        let listening = exhook_provider::Server::new(witness).bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listening.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listening.run_until(async {
            let _ = stopped.await;
        }));
        Ok(Running { url, seen, stop, task })
    }

    /// Stops serving once the calls in flight and the queued notifications are done.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        Ok(self.task.await.context("provider task")??)
    }
}

struct Providers {
    denylist: Running,
    rewriter: Running,
    audit: Running,
    audit_lines: Lines,
}

async fn start_providers(password: &Secret<String>) -> anyhow::Result<Providers> {
    // exhook_provider::examples::deny_list: `deny()` for mallory, `ignore()` for the rest.
    let denylist = Running::start("denylist [v3]", DenyList::new(["mallory"]), password).await?;
    // exhook_provider::examples::payload_rewriter: a JSON envelope around sensors/raw/# payloads.
    let rewriter = Running::start("rewriter [v2]", PayloadRewriter::new(["sensors/raw/#"]), password).await?;
    // exhook_provider::examples::audit_log: JSON lines of what happened, never the password.
    let audit_lines = Lines::default();
    let audit = Running::start("audit [v1]", AuditLog::new(audit_lines.clone()), password).await?;
    Ok(Providers { denylist, rewriter, audit, audit_lines })
}

/// Runs the demo with a simulated EMQX speaking `options.emqx`'s package.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let Options { emqx, password, admin } = options;
    let Providers { denylist, rewriter, audit, audit_lines } =
        start_providers(&password).await.context("starting example providers")?;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "denylist"
url = "{}"
protocol = "v3"
timeout = "300ms"
failed_action = "deny"

[[providers]]
name = "rewriter"
url = "{}"
protocol = "v2"
timeout = "200ms"
failed_action = "ignore"

[[providers]]
name = "audit"
url = "{}"
protocol = "v1"
timeout = "100ms"
failed_action = "ignore"

[chains]
"client.authenticate" = ["denylist", "audit"]
"message.publish" = ["rewriter"]
"#,
        denylist.url, rewriter.url, audit.url
    );
    let config = Config::parse(&toml, Path::new("<demo>"))?;
    println!("exhook-gateway demo: three of the Rust kit's examples, each called in a different EMQX line's package");
    println!("  denylist [v3] examples::deny_list --deny mallory              {}", denylist.url);
    println!("  rewriter [v2] examples::payload_rewriter --topic sensors/raw/# {}", rewriter.url);
    println!("  audit    [v1] examples::audit_log (JSON lines)                {}", audit.url);
    println!("resolved chains:");
    for line in exhook_config::render_chains(&config).lines().filter(|l| !l.contains("(none)")) {
        println!("  {line}");
    }

    let names = vec![("denylist".into(), Version::V3), ("rewriter".into(), Version::V2), ("audit".into(), Version::V1)];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let gateway = Gateway::new(config, Arc::new(Printer { names }))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_task = match admin {
        Some(admin) => {
            let admin_listener =
                tokio::net::TcpListener::bind(admin).await.with_context(|| format!("--admin: cannot bind {admin}"))?;
            let admin_addr = admin_listener.local_addr()?;
            let state =
                exhook_admin::AdminState::new(gateway.clone(), None, exhook_admin::ConfigInfo::new(None, &toml));
            state.set_listener_up(true);
            println!("admin plane: http://{admin_addr}/ (/metrics, /api/v1/status, status page)");
            Some(tokio::spawn(exhook_admin::serve(admin_listener, state, async {
                let _ = admin_stop_rx.await;
            })))
        }
        None => None,
    };
    let serving = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            gateway
                .serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await
        })
    };

    let emqx_client = EmqxClient::connect(&format!("http://{addr}"), emqx).await?;
    println!("\nsimulated EMQX ({}) -> gateway at http://{addr}\n", emqx.package());

    println!("=> OnProviderLoaded");
    let loaded = emqx_client
        .loaded(&model::ProviderLoadedRequest {
            broker: Some(model::BrokerInfo {
                version: sample::emqx_release(emqx).into(),
                sysdescr: "EMQX".into(),
                uptime: 7_000,
                datetime: "2026-11-22T03:29:11Z".into(),
            }),
            meta: meta(emqx, "emqxcl"),
        })
        .await?;
    for p in gateway.providers() {
        println!("    {:<10} loaded, speaks {}", p.name(), p.version().map_or("?", |v| v.as_str()));
    }
    let hooks: Vec<String> = loaded
        .hooks
        .iter()
        .map(|h| if h.topics.is_empty() { h.name.clone() } else { format!("{} {:?}", h.name, h.topics) })
        .collect();
    println!("  <= EMQX gets hooks: {}", hooks.join(", "));

    let m = meta(emqx, "emqxcl");
    macro_rules! step {
        ($label:expr, $kind:ident, $req:expr) => {{
            println!("\n=> {}", $label);
            let request = $req;
            tracing::debug!(?request, "simulated EMQX sends {}", $label);
            emqx_client.$kind(&request).await.with_context(|| $label.to_string())?
        }};
    }
    step!(
        "OnClientConnect alice",
        notify,
        model::ClientConnectRequest {
            conninfo: Some(model::ConnInfo {
                clientid: "alice-1".into(),
                username: "alice".into(),
                ..Default::default()
            }),
            meta: m.clone(),
            ..Default::default()
        }
    );
    step!(
        "OnClientAuthenticate alice",
        valued,
        model::ClientAuthenticateRequest {
            clientinfo: client_info("alice-1", "alice", &password),
            result: true,
            meta: m.clone()
        }
    );
    step!(
        "OnClientAuthenticate mallory",
        valued,
        model::ClientAuthenticateRequest {
            clientinfo: client_info("mallory-1", "mallory", &password),
            result: true,
            meta: m.clone()
        }
    );
    step!(
        "OnSessionCreated alice",
        notify,
        model::SessionCreatedRequest { clientinfo: client_info("alice-1", "alice", &password), meta: m.clone() }
    );
    step!(
        "OnClientConnected alice",
        notify,
        model::ClientConnectedRequest { clientinfo: client_info("alice-1", "alice", &password), meta: m.clone() }
    );
    step!(
        "OnClientAuthorize alice publish sensors/raw/1",
        valued,
        model::ClientAuthorizeRequest {
            clientinfo: client_info("alice-1", "alice", &password),
            r#type: 0,
            topic: "sensors/raw/1".into(),
            result: true,
            meta: m.clone()
        }
    );
    let published = step!(
        "OnMessagePublish sensors/raw/1",
        valued,
        model::MessagePublishRequest {
            message: message("sensors/raw/1", "21.5C"),
            meta: m.clone(),
            ..Default::default()
        }
    );
    step!(
        "OnMessagePublish alerts/door",
        valued,
        model::MessagePublishRequest { message: message("alerts/door", "open"), meta: m.clone(), ..Default::default() }
    );
    // EMQX delivers the message the chain folded to: the rewriter's envelope.
    let delivered = match published.value {
        Some(Value::Message(m)) => m,
        _ => anyhow::bail!("the publish chain did not return the rewritten message"),
    };
    step!(
        "OnMessageDelivered sensors/raw/1 (rewritten) to alice",
        notify,
        model::MessageDeliveredRequest {
            clientinfo: client_info("alice-1", "alice", &password),
            message: Some(delivered),
            meta: m.clone()
        }
    );
    step!(
        "OnClientDisconnected alice",
        notify,
        model::ClientDisconnectedRequest {
            clientinfo: client_info("alice-1", "alice", &password),
            reason: "normal".into(),
            meta: m.clone()
        }
    );
    step!("OnProviderUnloaded", notify, model::ProviderUnloadedRequest { meta: m.clone() });

    // Notifications were acknowledged before delivery; show that they arrived, in order.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !audit_lines.text().contains(r#""event":"disconnected""#) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = audit_lines.text();
    println!("\naudit [v1] received, in order: (the JSON lines examples::audit_log wrote)");
    for line in written.lines() {
        println!("    {line}");
    }
    if !written.contains(r#""event":"disconnected""#) {
        anyhow::bail!("audit provider did not receive the queued notifications");
    }

    // The gateway must forward the password untouched (only its text forms are redacted).
    let authenticates = denylist.seen.authenticates.load(Ordering::Relaxed);
    let intact = authenticates > 0 && denylist.seen.intact.load(Ordering::Relaxed) == authenticates;
    println!(
        "\ndenylist [v3] received the password EMQX sent in each of its {authenticates} authenticate calls: {} (compared, never printed)",
        if intact { "yes" } else { "NO" }
    );
    if !intact {
        anyhow::bail!("the deny-list provider did not receive the clients' passwords intact");
    }

    if let Some(task) = admin_task {
        // Install the handlers before saying so: a SIGTERM sent on that line must be caught.
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
        let ctrl_c = tokio::signal::ctrl_c();
        println!("\nsession done; the gateway and its admin plane stay up until Ctrl-C or SIGTERM");
        #[cfg(unix)]
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = admin_stop_tx.send(());
        task.await.context("admin task")?.context("admin listener")?;
    }
    let _ = stop_tx.send(());
    serving.await.context("gateway task")??;
    for provider in [denylist, rewriter, audit] {
        provider.stop().await?;
    }
    Ok(())
}
