//! The scenarios compared side by side, and the gateway configuration each one runs.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use exhook_hooks::Version;
use exhook_loadgen::provider::{REWRITE_FROM, REWRITE_TO};
use exhook_loadgen::{Answer, Mix, ProviderSpec};
use serde::{Deserialize, Serialize};

/// A load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// 8 connections × 16 calls in flight, closed loop: maximum throughput.
    Throughput,
    /// 1 connection, 1 call in flight, closed loop: latency without queueing.
    Latency,
}

impl Shape {
    /// `(connections, in flight per connection)`.
    pub const fn load(self) -> (usize, usize) {
        match self {
            Shape::Throughput => (8, 16),
            Shape::Latency => (1, 1),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Throughput => "throughput",
            Shape::Latency => "latency",
        })
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "throughput" => Ok(Shape::Throughput),
            "latency" => Ok(Shape::Latency),
            other => Err(format!("unknown shape {other:?} (expected throughput or latency)")),
        }
    }
}

/// What sits between the load generator (EMQX) and the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Middle {
    /// Nothing: the load generator calls the providers, one after another when several.
    Direct,
    /// nginx `grpc_pass` to the first provider.
    Nginx,
    /// haproxy (`proto h2` on both sides) to the first provider.
    Haproxy,
    /// The gateway with every provider in the chain of the scenario's hook.
    Gateway,
}

impl Middle {
    /// The name its process is watched under.
    pub const fn name(self) -> &'static str {
        match self {
            Middle::Direct => "direct",
            Middle::Nginx => "nginx",
            Middle::Haproxy => "haproxy",
            Middle::Gateway => "gateway",
        }
    }
}

/// One configuration measured.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short id used in ratios: `A`, `B`, `B'`, `C`, `D0`, `D`, …
    pub id: &'static str,
    /// What it is.
    pub title: &'static str,
    /// Hooks called.
    pub mix: Mix,
    /// The providers (one `exhook-bench-provider` process serves them all).
    pub providers: Vec<ProviderSpec>,
    /// What is in between.
    pub middle: Middle,
    /// For the gateway: the hook whose explicit chain is every provider, in order (`None`:
    /// no explicit chain, every hook goes to every provider that registered it).
    pub chain_hook: Option<&'static str>,
    /// The answer every valued call must get (checked: anything else is an error).
    pub expect: Option<Answer>,
    /// Provider calls each operation should cause (notification fan-out: 5).
    pub fanout: u64,
    /// Run in the latency shape only.
    pub latency_only: bool,
    /// TLS on every hop (load generator → middle → providers), as EMQX with an `ssl` block.
    pub tls: bool,
    /// How the providers sit in the gateway's chain (issue 14).
    pub members: Members,
    /// Every provider has a decision cache (`[providers.cache]`, TTL longer than a run: warm
    /// after the first pass over the load generator's clients).
    pub cache: bool,
    /// The load's shape for this scenario instead of the run's ([`Shape::load`]): `(EMQX
    /// connections, calls in flight on each)` (issue 11's curves).
    pub load: Option<(usize, usize)>,
    /// Distinct clientids the load generator cycles through (default: its own, 1024).
    pub clients: Option<usize>,
    /// Bytes of each publish's payload (default: a small JSON reading).
    pub payload_bytes: Option<usize>,
    /// `connections` of every provider in the gateway's configuration (default: the
    /// gateway's, 1).
    pub provider_connections: Option<usize>,
    /// Where this run sits on one of issue 11's curves.
    pub curve: Option<CurvePoint>,
}

/// A point of a cost curve: the curve's name and its x value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurvePoint {
    /// `payload`, `connections`, `chain`, `filters` or `provider-connections`.
    pub curve: &'static str,
    /// The x value (bytes, connections, providers, filters).
    pub x: u64,
}

/// How the gateway's chain lists the scenario's providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Members {
    /// Plain names: decisive members (every scenario before issue 14).
    #[default]
    Decisive,
    /// `{ name = "...", mode = "observe" }`: told through the queue, never waited for.
    Observe,
    /// `[]`: the hook goes to no provider (the gateway's own floor).
    Empty,
}

/// The certificate files of a TLS run: one CA, one certificate (IP SAN 127.0.0.1) that the
/// providers and the gateway both serve.
#[derive(Debug, Clone)]
pub struct BenchTls {
    /// The CA (`ssl.cacertfile`, `[providers.tls] ca_file`).
    pub ca: std::path::PathBuf,
    /// The server certificate chain.
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
}

fn p(name: &str, version: Version, answer: Answer) -> ProviderSpec {
    ProviderSpec::new(name, version, answer)
}

fn filtered(mut spec: ProviderSpec, matching: &str) -> ProviderSpec {
    spec.filters = 1000;
    spec.matching = vec![matching.to_owned()];
    spec
}

/// A scenario with every option at its default: decisive members, no TLS, no cache, the
/// run's load shape, the load generator's own clients and payload, no curve.
#[allow(clippy::too_many_arguments)]
fn plain(
    id: &'static str,
    title: &'static str,
    mix: Mix,
    providers: Vec<ProviderSpec>,
    middle: Middle,
    chain_hook: Option<&'static str>,
    expect: Option<Answer>,
    fanout: u64,
) -> Scenario {
    Scenario {
        id,
        title,
        mix,
        providers,
        middle,
        chain_hook,
        expect,
        fanout,
        latency_only: false,
        tls: false,
        members: Members::Decisive,
        cache: false,
        load: None,
        clients: None,
        payload_bytes: None,
        provider_connections: None,
        curve: None,
    }
}

/// Every scenario, in the order they run within a round.
pub fn all(pv: Version) -> Vec<Scenario> {
    use Answer::{Continue, Rewrite, Stop};
    let stop1 = vec![p("p0", pv, Stop)];
    let chain3 = vec![p("p0", pv, Continue), p("p1", pv, Continue), p("p2", pv, Stop)];
    let publish2 = vec![
        filtered(p("p0", pv, Rewrite), &format!("{REWRITE_FROM}+")),
        filtered(p("p1", pv, Continue), &format!("{REWRITE_TO}+")),
    ];
    let fan5: Vec<ProviderSpec> = (0..5).map(|i| p(&format!("p{i}"), pv, Continue)).collect();
    let slow = |mut s: ProviderSpec| {
        s.delay = std::time::Duration::from_millis(2);
        s
    };
    let sc = plain;
    let auth = Some("client.authenticate");
    vec![
        sc("A", "direct to provider (floor)", Mix::Auth, stop1.clone(), Middle::Direct, None, Some(Stop), 1),
        sc("B", "nginx grpc_pass", Mix::Auth, stop1.clone(), Middle::Nginx, None, Some(Stop), 1),
        sc("B'", "haproxy h2", Mix::Auth, stop1.clone(), Middle::Haproxy, None, Some(Stop), 1),
        sc("C", "gateway, chain of 1", Mix::Auth, stop1.clone(), Middle::Gateway, auth, Some(Stop), 1),
        Scenario {
            tls: true,
            ..sc("AT", "direct to provider over TLS", Mix::Auth, stop1.clone(), Middle::Direct, None, Some(Stop), 1)
        },
        Scenario {
            tls: true,
            ..sc("CT", "gateway, chain of 1, TLS both sides", Mix::Auth, stop1, Middle::Gateway, auth, Some(Stop), 1)
        },
        sc("D0", "3 direct calls in sequence", Mix::Auth, chain3.clone(), Middle::Direct, None, Some(Stop), 3),
        sc("D", "gateway, chain of 3", Mix::Auth, chain3, Middle::Gateway, auth, Some(Stop), 3),
        sc("E0", "2 direct publish calls", Mix::Publish, publish2.clone(), Middle::Direct, None, Some(Continue), 2),
        sc(
            "E",
            "gateway, publish rewrite + 1k filters",
            Mix::Publish,
            publish2,
            Middle::Gateway,
            Some("message.publish"),
            Some(Continue),
            2,
        ),
        sc(
            "F0",
            "nginx to 1 provider, delivered",
            Mix::Delivered,
            vec![p("p0", pv, Continue)],
            Middle::Nginx,
            None,
            None,
            1,
        ),
        sc(
            "F",
            "gateway fan-out to 5, delivered",
            Mix::Delivered,
            fan5.clone(),
            Middle::Gateway,
            Some("message.delivered"),
            None,
            5,
        ),
        Scenario {
            latency_only: true,
            ..sc(
                "F0~",
                "nginx to 1 provider (2 ms), delivered",
                Mix::Delivered,
                vec![slow(p("p0", pv, Continue))],
                Middle::Nginx,
                None,
                None,
                1,
            )
        },
        Scenario {
            latency_only: true,
            ..sc(
                "F~",
                "gateway fan-out to 5 (2 ms each)",
                Mix::Delivered,
                fan5.into_iter().map(slow).collect(),
                Middle::Gateway,
                Some("message.delivered"),
                None,
                5,
            )
        },
        // Issue 14: a provider that only looks at publishes (audit, analytics), off the path
        // (observe) against in the chain and against no provider; a warm decision cache
        // against the uncached chain of 1 (C).
        Scenario {
            members: Members::Empty,
            ..sc(
                "O0",
                "gateway, publish to no provider",
                Mix::Publish,
                vec![p("p0", pv, Continue)],
                Middle::Gateway,
                Some("message.publish"),
                Some(Answer::Ignore),
                1,
            )
        },
        Scenario {
            members: Members::Observe,
            ..sc(
                "O",
                "gateway, publish, provider observes",
                Mix::Publish,
                vec![p("p0", pv, Continue)],
                Middle::Gateway,
                Some("message.publish"),
                Some(Answer::Ignore),
                1,
            )
        },
        sc(
            "O1",
            "gateway, publish, provider in chain",
            Mix::Publish,
            vec![p("p0", pv, Continue)],
            Middle::Gateway,
            Some("message.publish"),
            Some(Continue),
            1,
        ),
        Scenario {
            cache: true,
            ..sc(
                "K",
                "gateway, chain of 1, warm cache",
                Mix::Auth,
                vec![p("p0", pv, Stop)],
                Middle::Gateway,
                auth,
                Some(Stop),
                1,
            )
        },
        sc(
            "S0",
            "session mix, direct",
            Mix::Session,
            vec![p("p0", pv, Continue)],
            Middle::Direct,
            None,
            Some(Continue),
            1,
        ),
        sc(
            "S",
            "session mix, gateway",
            Mix::Session,
            vec![p("p0", pv, Continue)],
            Middle::Gateway,
            None,
            Some(Continue),
            1,
        ),
    ]
}

/// Issue 11's cost curves: for each point the gateway (chain over the point's providers) and
/// its floor (the load generator calling the same providers directly, one after another).
/// Run with `compare --curves`; the report draws CPU per call and throughput per curve.
pub fn curves(pv: Version) -> Vec<Scenario> {
    use Answer::{Continue, Stop};
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let base = |title: String, mix, providers, middle, hook, expect, fanout| {
        plain("", leak(title), mix, providers, middle, hook, expect, fanout)
    };
    let auth = Some("client.authenticate");
    let publish = Some("message.publish");
    let mut out = Vec::new();
    let mut pair = |curve: &'static str, x: u64, label: &str, make: &dyn Fn(Middle) -> Scenario| {
        for (middle, tag) in [(Middle::Direct, "direct"), (Middle::Gateway, "gateway")] {
            let mut sc = make(middle);
            sc.id = leak(format!("{curve}:{label}:{tag}"));
            sc.curve = Some(CurvePoint { curve, x });
            out.push(sc);
        }
    };
    // Payload bytes on message.publish (a provider that answers CONTINUE with the message).
    // Few clients: every client's requests are encoded up front.
    for (x, label) in [(100u64, "100B"), (1024, "1KiB"), (16 * 1024, "16KiB"), (256 * 1024, "256KiB")] {
        pair("payload", x, label, &|m| Scenario {
            clients: Some(64),
            payload_bytes: Some(x as usize),
            ..base(
                format!("publish, {label} payload"),
                Mix::Publish,
                vec![p("p0", pv, Continue)],
                m,
                publish,
                Some(Continue),
                1,
            )
        });
    }
    // EMQX connections (EMQX's pool is 8 per node), 128 calls in flight in all, 100,000 clientids.
    for (n, inflight) in [(8usize, 16usize), (64, 2), (512, 1)] {
        pair("connections", n as u64, &n.to_string(), &|m| Scenario {
            load: Some((n, inflight)),
            clients: Some(100_000),
            ..base(format!("{n} EMQX connections"), Mix::Auth, vec![p("p0", pv, Stop)], m, auth, Some(Stop), 1)
        });
    }
    // Chain length: CONTINUE … CONTINUE, STOP_AND_RETURN.
    for n in [1usize, 3, 10] {
        let providers: Vec<ProviderSpec> =
            (0..n).map(|i| p(&format!("p{i}"), pv, if i + 1 == n { Stop } else { Continue })).collect();
        pair("chain", n as u64, &n.to_string(), &|m| {
            base(format!("chain of {n}"), Mix::Auth, providers.clone(), m, auth, Some(Stop), n as u64)
        });
    }
    // Topic filters registered by the provider (the publish topic matches one of them).
    for n in [1usize, 100, 10_000] {
        pair("filters", n as u64, &n.to_string(), &|m| {
            let mut spec = p("p0", pv, Continue);
            spec.filters = n;
            spec.matching = vec!["bench/raw/+".to_owned()];
            base(format!("{n} topic filters"), Mix::Publish, vec![spec], m, publish, Some(Continue), 1)
        });
    }
    // HTTP/2 connections from the gateway to the provider (memory per provider connection).
    for n in [1usize, 64] {
        pair("provider-connections", n as u64, &n.to_string(), &|m| Scenario {
            provider_connections: Some(n),
            ..base(format!("{n} provider connections"), Mix::Auth, vec![p("p0", pv, Stop)], m, auth, Some(Stop), 1)
        });
    }
    out
}

/// The gateway's TOML for a scenario: its providers (protocol pinned, generous timeouts),
/// and the scenario's hook chained over all of them.
/// The admin listener (metrics, status) stays enabled, as deployed, on `admin` (a free port:
/// the default 127.0.0.1:9100 may be taken by another gateway on the machine).
pub fn gateway_toml(
    listen: SocketAddr,
    admin: SocketAddr,
    scenario: &Scenario,
    addrs: &[(String, SocketAddr)],
    worker_threads: Option<usize>,
    tls: Option<&BenchTls>,
) -> String {
    let mut s = format!(
        "# generated by exhook-benches compare: scenario {} ({})\n[server]\ndefault_deadline = \"10s\"\n",
        scenario.id, scenario.title
    );
    if let Some(n) = worker_threads {
        s.push_str(&format!("worker_threads = {n}\n"));
    }
    match tls {
        None => s.push_str(&format!("listen = \"{listen}\"\n")),
        Some(t) => s.push_str(&format!(
            "[server.tls]\nlisten = \"{listen}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            t.cert.display(),
            t.key.display()
        )),
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    s.push_str(&format!("\n[admin]\nlisten = \"{admin}\"\n"));
    for (spec, (name, addr)) in scenario.providers.iter().zip(addrs) {
        s.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nurl = \"{scheme}://{addr}\"\nprotocol = \"{}\"\ntimeout = \"5s\"\nconnect_timeout = \"2s\"\nfailed_action = \"deny\"\nnotify = \"queue\"\n",
            spec.version
        ));
        if let Some(t) = tls {
            s.push_str(&format!("[providers.tls]\nca_file = \"{}\"\n", t.ca.display()));
        }
        if let Some(n) = scenario.provider_connections {
            s.push_str(&format!("connections = {n}\n"));
        }
        if scenario.cache {
            s.push_str("[providers.cache]\nttl = \"1h\"\n");
        }
    }
    s.push_str("\n[chains]\n");
    if let Some(hook) = scenario.chain_hook {
        let names: Vec<String> = match scenario.members {
            Members::Decisive => addrs.iter().map(|(n, _)| format!("\"{n}\"")).collect(),
            Members::Observe => {
                addrs.iter().map(|(n, _)| format!("{{ name = \"{n}\", mode = \"observe\" }}")).collect()
            }
            Members::Empty => Vec::new(),
        };
        s.push_str(&format!("\"{hook}\" = [{}]\n", names.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_curve_point_pairs_the_gateway_with_its_floor() {
        let curves = curves(Version::V3);
        let mut ids: Vec<_> = curves.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), curves.len(), "curve ids are unique");
        for gw in curves.iter().filter(|s| s.middle == Middle::Gateway) {
            let floor = gw.id.replace(":gateway", ":direct");
            let direct = curves.iter().find(|s| s.id == floor).unwrap_or_else(|| panic!("{} has no floor", gw.id));
            assert_eq!((direct.curve, direct.middle), (gw.curve, Middle::Direct));
            assert_eq!(direct.providers.len(), gw.providers.len(), "{}: same providers", gw.id);
        }
        let at = |curve| curves.iter().filter(|s| s.curve.is_some_and(|c| c.curve == curve)).count() / 2;
        assert_eq!((at("payload"), at("connections"), at("chain"), at("filters")), (4, 3, 3, 3));
        let big = curves.iter().find(|s| s.id == "connections:512:gateway").unwrap();
        assert_eq!((big.load, big.clients), (Some((512, 1)), Some(100_000)));
    }

    #[test]
    fn ids_are_unique_and_gateway_configs_parse_shape() {
        let all = all(Version::V3);
        let mut ids: Vec<_> = all.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        let d = all.iter().find(|s| s.id == "D").unwrap();
        let addrs: Vec<(String, SocketAddr)> =
            (0..3).map(|i| (format!("p{i}"), SocketAddr::from(([127, 0, 0, 1], 7000 + i)))).collect();
        let toml = gateway_toml(
            "127.0.0.1:9000".parse().unwrap(),
            "127.0.0.1:9001".parse().unwrap(),
            d,
            &addrs,
            Some(1),
            None,
        );
        assert!(toml.contains("\"client.authenticate\" = [\"p0\", \"p1\", \"p2\"]"), "{toml}");
        assert!(toml.contains("protocol = \"v3\""));
        assert!(toml.contains("[admin]\nlisten = \"127.0.0.1:9001\""));
        // Issue 14's scenarios write configurations the gateway accepts.
        for id in ["O0", "O", "O1", "K"] {
            let sc = all.iter().find(|s| s.id == id).unwrap();
            let toml = gateway_toml(
                "127.0.0.1:9000".parse().unwrap(),
                "127.0.0.1:9001".parse().unwrap(),
                sc,
                &addrs[..1],
                None,
                None,
            );
            exhook_config::Config::parse(&toml, std::path::Path::new("bench.toml"))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }
}
