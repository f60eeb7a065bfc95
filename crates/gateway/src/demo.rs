//! `exhook-gateway demo`: three example providers written for three different EMQX lines,
//! the gateway in front of them, and a simulated EMQX session, all on loopback.
//!
//! The simulated clients authenticate with a password (`--password`): the gateway forwards it
//! to the providers, and the demo checks that the deny-list provider received it intact, but it
//! is never printed: the demo logs every request it sends and the providers log what they
//! receive (at `debug`), and `ClientInfo`'s `Debug` redacts it. With `--admin`, the admin plane
//! (`/metrics`, `/api/v1/status`, the status page) serves the demo's gateway, which then stays
//! up after the session until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exhook_chain::Ending;
use exhook_config::Config;
use exhook_hooks::{Hook, Version};
use exhook_proto::Secret;
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_proto::{v1, v3};
use exhook_server::observe::{CallEvent, Observer, StepEvent, StepResult};
use exhook_server::{Gateway, outcome_name};
use exhook_sim::sample::{self, meta};
use exhook_sim::{EmqxClient, Reply, SimProvider};

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

async fn start_providers() -> anyhow::Result<(SimProvider, SimProvider, SimProvider)> {
    // A deny-list authenticator written for EMQX 5.9+ (v3).
    let denylist = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(|call| match call.hook {
            Hook::ClientAuthenticate => {
                // Decoded as its own package, as a provider written for 5.9+ would.
                let r: v3::ClientAuthenticateRequest = call.request();
                tracing::debug!(request = ?r, "denylist [v3] received");
                let user = r.clientinfo.map(|c| c.username).unwrap_or_default();
                if user == "mallory" {
                    Reply::bool(ResponsedType::StopAndReturn, false)
                } else {
                    Reply::bool(ResponsedType::Continue, true)
                }
            }
            _ => Reply::Default,
        })
        .start()
        .await?;
    // A topic rewriter written for EMQX 5.0-5.8 (v2): sensors/raw/# -> sensors/clean/#.
    let rewriter = SimProvider::builder(Version::V2)
        .hook_topics("message.publish", &["sensors/raw/#"])
        .script(|call| match call.hook {
            Hook::MessagePublish => {
                let r: model::MessagePublishRequest = call.request();
                let mut m = r.message.unwrap_or_default();
                m.topic = m.topic.replacen("sensors/raw/", "sensors/clean/", 1);
                Reply::message(ResponsedType::Continue, m)
            }
            _ => Reply::Default,
        })
        .start()
        .await?;
    // An audit logger written for EMQX 4.x (v1): sees everything, changes nothing.
    let audit = SimProvider::builder(Version::V1)
        .hooks(&[
            "client.authenticate",
            "client.connected",
            "client.disconnected",
            "session.created",
            "message.publish",
            "message.delivered",
        ])
        .script(|call| {
            if call.hook == Hook::ClientAuthenticate {
                let r: v1::ClientAuthenticateRequest = call.request();
                tracing::debug!(request = ?r, "audit [v1] received");
            } else {
                tracing::debug!(hook = %call.hook, "audit [v1] received");
            }
            Reply::Default
        })
        .start()
        .await?;
    Ok((denylist, rewriter, audit))
}

/// Runs the demo with a simulated EMQX speaking `options.emqx`'s package.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let Options { emqx, password, admin } = options;
    let (denylist, rewriter, audit) = start_providers().await.context("starting example providers")?;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "denylist"
url = "{}"
protocol = "auto"
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
protocol = "auto"
timeout = "100ms"
failed_action = "ignore"

[chains]
"client.authenticate" = ["denylist", "audit"]
"message.publish" = ["rewriter", "audit"]
"#,
        denylist.url(),
        rewriter.url(),
        audit.url()
    );
    let config = Config::parse(&toml, Path::new("<demo>"))?;
    println!("exhook-gateway demo: three providers, each written for a different EMQX line");
    println!("  denylist [v3] deny-list authenticator      {}", denylist.url());
    println!("  rewriter [v2] topic rewriter (sensors/raw/#) {}", rewriter.url());
    println!("  audit    [v1] audit logger (4.x provider)   {}", audit.url());
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
            emqx_client.$kind(&request).await.with_context(|| $label.to_string())?;
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
    step!(
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
    step!(
        "OnMessageDelivered sensors/clean/1 to alice",
        notify,
        model::MessageDeliveredRequest {
            clientinfo: client_info("alice-1", "alice", &password),
            message: message("sensors/clean/1", "21.5C"),
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
    let delivered = audit.wait_for(Hook::ClientDisconnected, 1, Duration::from_secs(2)).await;
    println!("\naudit [v1] received, in order:");
    for c in audit.calls().iter().filter(|c| c.hook != Hook::ProviderLoaded) {
        let name = c.hook.hookpoint(Version::V1).unwrap_or(c.hook.rpc(Version::V1));
        println!("    {name}");
    }
    if delivered.is_empty() {
        anyhow::bail!("audit provider did not receive the queued notifications");
    }

    // The gateway must forward the password untouched (only its text forms are redacted).
    let authenticates = denylist.calls_of(Hook::ClientAuthenticate);
    let intact = !authenticates.is_empty()
        && authenticates.iter().all(|c| {
            let r: v3::ClientAuthenticateRequest = c.request();
            r.clientinfo.is_some_and(|ci| ci.password == *password.expose())
        });
    println!(
        "\ndenylist [v3] received the password EMQX sent in each of its {} authenticate calls: {} (compared, never printed)",
        authenticates.len(),
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
    Ok(())
}
