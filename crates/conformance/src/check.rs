//! The checks: pure functions from what was sent and what came back to a [`Verdict`].
//!
//! Nothing here does I/O; the driver (`driver.rs`) records one [`Exchange`] per call and hands
//! them over. Each check names the contract rule it enforces (`proto/contract/contract.md`) in
//! its reason, so a failing row says what EMQX would do with the provider's answer.
//!
//! ```
//! use std::time::Duration;
//! use exhook_conformance::{Answer, CheckId, Exchange, Outcome, check};
//! use exhook_hooks::Hook;
//! use exhook_proto::model::ValuedResponse;
//!
//! // client.authenticate answered CONTINUE with a message: the wrong kind of value.
//! let answer = ValuedResponse {
//!     r#type: 0,
//!     value: Some(exhook_proto::model::valued_response::Value::Message(Default::default())),
//! };
//! let exchange = Exchange::new(Hook::ClientAuthenticate, Answer::Valued(answer), Duration::from_millis(2));
//! let verdict = check::value_kinds(&[exchange]);
//! assert_eq!((verdict.check, verdict.outcome), (CheckId::ValueKinds, Outcome::Fail));
//! assert!(verdict.reason.contains("client.authenticate: CONTINUE with a message where a bool_result is expected"));
//! ```

use std::fmt;
use std::time::Duration;

use exhook_hooks::{Hook, HookKind, Version};
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_proto::model::{LoadedResponse, Message, ValuedResponse};

/// One row of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// The provider serves the protobuf package the EMQX line speaks.
    Package,
    /// `OnProviderLoaded` is answered with hook names EMQX accepts.
    ProviderLoaded,
    /// The `message.*` hooks' topic filters are valid MQTT filters.
    TopicFilters,
    /// Every registered valued hook is answered with a `ValuedResponse`, not an error.
    ValuedAnswers,
    /// CONTINUE / STOP_AND_RETURN carry the kind of value the hook folds.
    ValueKinds,
    /// A returned `message.publish` Message keeps what EMQX and the next provider rely on.
    MessageKept,
    /// Every registered notification hook is answered `EmptySuccess`, not an error.
    Notifications,
    /// Every call is answered within the deadline EMQX sends.
    Deadline,
    /// `OnProviderUnloaded` is answered without an error.
    ProviderUnloaded,
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 9] = [
        CheckId::Package,
        CheckId::ProviderLoaded,
        CheckId::TopicFilters,
        CheckId::ValuedAnswers,
        CheckId::ValueKinds,
        CheckId::MessageKept,
        CheckId::Notifications,
        CheckId::Deadline,
        CheckId::ProviderUnloaded,
    ];

    /// The name in the table and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            CheckId::Package => "package",
            CheckId::ProviderLoaded => "provider loaded",
            CheckId::TopicFilters => "topic filters",
            CheckId::ValuedAnswers => "valued answers",
            CheckId::ValueKinds => "value kinds",
            CheckId::MessageKept => "message kept",
            CheckId::Notifications => "notifications",
            CheckId::Deadline => "deadline",
            CheckId::ProviderUnloaded => "provider unloaded",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// What EMQX relies on holds.
    Pass,
    /// It does not: the reason says what EMQX would do.
    Fail,
    /// Not exercised (the provider registers nothing it applies to, or an earlier step failed).
    Skip,
}

impl Outcome {
    /// `pass`, `FAIL` or `skip` (failures stand out in the table).
    pub const fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// One check's verdict and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Which check.
    pub check: CheckId,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// Why: for a failure every offending call and what EMQX does with it; for a pass, what
    /// was seen.
    pub reason: String,
}

impl Verdict {
    /// A passing verdict.
    pub fn pass(check: CheckId, reason: impl Into<String>) -> Verdict {
        Verdict { check, outcome: Outcome::Pass, reason: reason.into() }
    }

    /// A failing verdict.
    pub fn fail(check: CheckId, reason: impl Into<String>) -> Verdict {
        Verdict { check, outcome: Outcome::Fail, reason: reason.into() }
    }

    /// A skipped check.
    pub fn skip(check: CheckId, reason: impl Into<String>) -> Verdict {
        Verdict { check, outcome: Outcome::Skip, reason: reason.into() }
    }

    /// Fails with the problems joined by `; `, or passes with `ok`.
    fn from_problems(check: CheckId, problems: Vec<String>, ok: impl FnOnce() -> String) -> Verdict {
        if problems.is_empty() { Verdict::pass(check, ok()) } else { Verdict::fail(check, problems.join("; ")) }
    }
}

/// What came back from one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A `LoadedResponse` (`OnProviderLoaded`).
    Loaded(LoadedResponse),
    /// A `ValuedResponse` (the valued hooks).
    Valued(ValuedResponse),
    /// `EmptySuccess` (notifications, `OnProviderUnloaded`).
    Empty,
    /// A gRPC error status.
    Error {
        /// The status code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// No answer within the deadline.
    TimedOut,
}

impl Answer {
    /// The answer as a short text for reasons (`INTERNAL "boom"`, `no answer`).
    fn describe(&self) -> String {
        match self {
            Answer::Loaded(_) => "LoadedResponse".into(),
            Answer::Valued(v) => format!("{} ValuedResponse", type_name(v.r#type)),
            Answer::Empty => "EmptySuccess".into(),
            Answer::Error { code, message } => status_text(*code, message),
            Answer::TimedOut => "no answer".into(),
        }
    }
}

/// One call the driver made, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The RPC.
    pub hook: Hook,
    /// The hook's name as the provider's package spells it (`client.check_acl` in v1).
    pub name: &'static str,
    /// What the request was about, to tell two calls of one hook apart in reasons
    /// (`SUBSCRIBE t/#`, `t/1 qos 1`); empty when there is nothing to tell.
    pub about: String,
    /// The Message the request carried (`message.*` hooks), to compare a returned one with.
    pub sent_message: Option<Message>,
    /// What came back.
    pub answer: Answer,
    /// How long the answer took.
    pub elapsed: Duration,
}

impl Exchange {
    /// One exchange, named as in EMQX 5.x, about nothing in particular.
    pub fn new(hook: Hook, answer: Answer, elapsed: Duration) -> Exchange {
        Exchange { hook, name: hook.name(), about: String::new(), sent_message: None, answer, elapsed }
    }

    /// Names the hook as `version`'s package does.
    pub fn in_package(mut self, version: Version) -> Exchange {
        self.name = hook_name(self.hook, version);
        self
    }

    /// Says what the request was about.
    pub fn about(mut self, about: impl Into<String>) -> Exchange {
        self.about = about.into();
        self
    }

    /// Records the Message the request carried (and says it was about its topic and QoS).
    pub fn with_message(mut self, message: Message) -> Exchange {
        if self.about.is_empty() {
            self.about = format!("{} qos {}", message.topic, message.qos);
        }
        self.sent_message = Some(message);
        self
    }

    /// `message.publish (t/1 qos 1)`, `client.authorize (SUBSCRIBE t/#)`, or the name alone.
    fn label(&self) -> String {
        if self.about.is_empty() { self.name.to_owned() } else { format!("{} ({})", self.name, self.about) }
    }
}

/// The hookpoint name as `version`'s EMQX line spells it (the RPC name for the lifecycle RPCs).
pub fn hook_name(hook: Hook, version: Version) -> &'static str {
    hook.hookpoint(version).unwrap_or(hook.rpc(version))
}

/// What the driver learnt about the package while probing `OnProviderLoaded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageProbe {
    /// The package asked for (`None`: auto-detect, newest first).
    pub asked: Option<Version>,
    /// Packages tried that answered UNIMPLEMENTED (no such service or method), with the
    /// status message, in the order tried.
    pub unimplemented: Vec<(Version, String)>,
    /// The package that answered anything else (the one the other checks ran in).
    pub speaks: Option<Version>,
}

/// The EMQX lines of a package, for reasons.
pub fn emqx_lines(version: Version) -> &'static str {
    match version {
        Version::V1 => "EMQX 4.x",
        Version::V2 => "EMQX 5.0-5.8",
        Version::V3 => "EMQX 5.9+, 5.10, 6.x",
    }
}

/// `package`: the provider serves the package its EMQX line speaks. EMQX calls
/// `/<package>.HookProvider/<Rpc>`; a provider of another package answers UNIMPLEMENTED
/// ("Method not found!") to `OnProviderLoaded` and is never loaded (contract §0 row 1).
pub fn package(probe: &PackageProbe) -> Verdict {
    let id = CheckId::Package;
    let tried = |v: &[(Version, String)]| {
        v.iter()
            .map(|(v, m)| format!("{} {}", v.package(), status_text(tonic::Code::Unimplemented, m)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (probe.asked, probe.speaks) {
        (_, None) => Verdict::fail(
            id,
            format!(
                "OnProviderLoaded is answered in no package ({}): no EMQX line would ever load it",
                tried(&probe.unimplemented)
            ),
        ),
        (Some(asked), Some(speaks)) if asked != speaks => Verdict::fail(
            id,
            format!(
                "does not serve {} ({}): {} gets \"Method not found\" on OnProviderLoaded and never loads it; \
                 it speaks {} ({}), the other checks ran in that package",
                asked.package(),
                tried(&probe.unimplemented[..1.min(probe.unimplemented.len())]),
                emqx_lines(asked),
                speaks.package(),
                emqx_lines(speaks),
            ),
        ),
        (Some(_), Some(speaks)) => {
            Verdict::pass(id, format!("serves {} ({}), as asked", speaks.package(), emqx_lines(speaks)))
        }
        (None, Some(speaks)) => {
            let probed = if probe.unimplemented.is_empty() {
                String::new()
            } else {
                format!("; not {}", probe.unimplemented.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", "))
            };
            Verdict::pass(id, format!("serves {} ({}){probed}", speaks.package(), emqx_lines(speaks)))
        }
    }
}

/// The hooks a `LoadedResponse` registers that EMQX of `version`'s line accepts, with their
/// topic filters (the driver calls exactly these, as EMQX would). Invalid names are left out.
pub fn registered(version: Version, loaded: &LoadedResponse) -> Vec<(Hook, Vec<String>)> {
    let mut out: Vec<(Hook, Vec<String>)> = Vec::new();
    for spec in &loaded.hooks {
        let Some(hook) = Hook::from_hookpoint(&spec.name) else { continue };
        if hook.hookpoint(version) != Some(spec.name.as_str()) {
            continue;
        }
        match out.iter_mut().find(|(h, _)| *h == hook) {
            Some((_, topics)) => topics.extend(spec.topics.iter().cloned()),
            None => out.push((hook, spec.topics.clone())),
        }
    }
    out.sort_by_key(|(h, _)| *h);
    out
}

/// `provider loaded`: `OnProviderLoaded` is answered (in time, without an error) with a
/// `LoadedResponse` whose every hook name is a hookpoint of `version`'s EMQX line. EMQX fails
/// the whole load on one unknown name (`unknown_hookpoint`) and retries it every
/// `auto_reconnect`; a load that errors or times out is retried the same way (contract §4.2,
/// §4.3). A provider that registers nothing is never called.
pub fn provider_loaded(version: Version, exchange: &Exchange, timeout: Duration) -> Verdict {
    let id = CheckId::ProviderLoaded;
    let loaded = match &exchange.answer {
        Answer::Loaded(l) => l,
        Answer::TimedOut => {
            return Verdict::fail(
                id,
                format!(
                    "no answer within {}: EMQX marks the load failed (timeout) and retries it every auto_reconnect",
                    fmt_duration(timeout)
                ),
            );
        }
        other => {
            return Verdict::fail(
                id,
                format!(
                    "answered {}: EMQX marks the load failed and retries it every auto_reconnect; it never calls the provider",
                    other.describe()
                ),
            );
        }
    };
    let mut problems = Vec::new();
    let mut unnamed = 0;
    for spec in &loaded.hooks {
        if spec.name.is_empty() {
            unnamed += 1;
            continue;
        }
        match Hook::from_hookpoint(&spec.name) {
            Some(hook) if hook.hookpoint(version) == Some(spec.name.as_str()) => {}
            Some(hook) => problems.push(format!(
                "{:?} is not a hookpoint of {} ({}): EMQX fails the whole load (unknown_hookpoint); register {:?}",
                spec.name,
                emqx_lines(version),
                version.package(),
                hook.hookpoint(version).unwrap_or_default()
            )),
            None => problems.push(format!(
                "unknown hookpoint {:?}: EMQX fails the whole load (unknown_hookpoint) and retries it every auto_reconnect",
                spec.name
            )),
        }
    }
    let valid = registered(version, loaded);
    if valid.is_empty() && problems.is_empty() {
        problems.push("registers no hook: EMQX would never call it".into());
    }
    Verdict::from_problems(id, problems, || {
        let mut ok = format!("registers {} hook{}", valid.len(), plural(valid.len()));
        if unnamed > 0 {
            ok.push_str(&format!(" ({unnamed} HookSpec without a name, skipped by EMQX)"));
        }
        ok
    })
}

/// `topic filters`: every topic of a `message.*` hook is a valid MQTT topic filter. EMQX
/// matches message topics against them with `emqx_topic:match` (contract §4.2); an invalid
/// filter matches differently in EMQX and in the gateway (which ignores it), so the provider
/// would not get the messages it asked for. Topics of other hooks are ignored by EMQX (noted).
pub fn topic_filters(loaded: &LoadedResponse) -> Verdict {
    let id = CheckId::TopicFilters;
    let mut problems = Vec::new();
    let mut filters = 0;
    let mut ignored = Vec::new();
    for spec in &loaded.hooks {
        let Some(hook) = Hook::from_hookpoint(&spec.name) else { continue };
        if !hook.is_message_hook() {
            if !spec.topics.is_empty() {
                ignored.push(spec.name.clone());
            }
            continue;
        }
        for topic in &spec.topics {
            filters += 1;
            if let Err(e) = exhook_topic::validate_filter(topic) {
                problems.push(format!("{}: {e}: the provider does not get the messages it asked for", spec.name));
            }
        }
    }
    if problems.is_empty() && filters == 0 && ignored.is_empty() {
        return Verdict::pass(id, "no topic filters: the message hooks get every topic");
    }
    Verdict::from_problems(id, problems, || {
        let mut ok = format!("{filters} filter{} valid", plural(filters));
        if !ignored.is_empty() {
            ok.push_str(&format!(" (topics on {} are ignored by EMQX)", ignored.join(", ")));
        }
        ok
    })
}

fn of_kind(exchanges: &[Exchange], kind: HookKind) -> impl Iterator<Item = &Exchange> {
    exchanges.iter().filter(move |e| e.hook.kind() == kind)
}

fn timed_out_note(n: usize) -> String {
    if n == 0 { String::new() } else { format!("; {n} timed out (see deadline)") }
}

/// `valued answers`: every call of a registered valued hook (authenticate, authorize,
/// publish) is answered with a `ValuedResponse`. An error status makes EMQX apply the
/// provider's `failed_action`, `deny` by default: the client is refused, the publish stops
/// there (contract §0 row 6, §3.3). Timeouts are reported by `deadline`.
pub fn valued_answers(exchanges: &[Exchange]) -> Verdict {
    let id = CheckId::ValuedAnswers;
    let calls: Vec<&Exchange> = of_kind(exchanges, HookKind::Valued).collect();
    if calls.is_empty() {
        return Verdict::skip(id, "registers no valued hook");
    }
    let timed_out = calls.iter().filter(|e| e.answer == Answer::TimedOut).count();
    let problems = calls
        .iter()
        .filter(|e| matches!(e.answer, Answer::Error { .. } | Answer::Loaded(_) | Answer::Empty))
        .map(|e| {
            format!("{}: {}: EMQX applies failed_action (deny by default: refused)", e.label(), e.answer.describe())
        })
        .collect();
    let answered = calls.len() - timed_out;
    Verdict::from_problems(id, problems, || {
        format!("{answered} of {} answered{}", calls.len(), timed_out_note(timed_out))
    })
}

/// `value kinds`: a CONTINUE or STOP_AND_RETURN answer carries the value its hook folds
/// (`bool_result` for authenticate/authorize, `message` for publish) and the type is one of
/// CONTINUE, IGNORE, STOP_AND_RETURN. EMQX logs any other combination and treats it as
/// IGNORE: the provider's decision is lost (contract §3.3, merge rules).
pub fn value_kinds(exchanges: &[Exchange]) -> Verdict {
    let id = CheckId::ValueKinds;
    let answers: Vec<(&Exchange, &ValuedResponse)> = of_kind(exchanges, HookKind::Valued)
        .filter_map(|e| match &e.answer {
            Answer::Valued(v) => Some((e, v)),
            _ => None,
        })
        .collect();
    if answers.is_empty() {
        return Verdict::skip(id, "no valued answer to check");
    }
    let mut problems = Vec::new();
    let mut decided = 0;
    for (e, v) in &answers {
        let ty = match ResponsedType::try_from(v.r#type) {
            Ok(ResponsedType::Ignore) => continue,
            Ok(ty) => ty,
            Err(_) => {
                problems.push(format!(
                    "{}: type {} is not CONTINUE, IGNORE or STOP_AND_RETURN: EMQX ignores the answer",
                    e.label(),
                    v.r#type
                ));
                continue;
            }
        };
        decided += 1;
        let wants_message = e.hook == Hook::MessagePublish;
        let problem = match (&v.value, wants_message) {
            (None, _) => Some(format!(
                "{}: {} without a value: EMQX logs a warning and treats it as IGNORE",
                e.label(),
                ty.as_str_name()
            )),
            (Some(Value::Message(_)), false) => Some(format!(
                "{}: {} with a message where a bool_result is expected: EMQX treats it as IGNORE",
                e.label(),
                ty.as_str_name()
            )),
            (Some(Value::BoolResult(b)), true) => Some(format!(
                "{}: {} with bool_result {b} where a message is expected: EMQX treats it as IGNORE (the publish is neither changed nor stopped)",
                e.label(),
                ty.as_str_name()
            )),
            _ => None,
        };
        problems.extend(problem);
    }
    Verdict::from_problems(id, problems, || {
        let ignored = answers.len() - decided;
        format!("{decided} CONTINUE/STOP_AND_RETURN with the right value, {ignored} IGNORE")
    })
}

/// `message kept`: a Message returned (CONTINUE or STOP_AND_RETURN) for `message.publish`
/// keeps the request's id, from, qos, timestamp and headers (`allow_publish` may change, headers
/// may be added) and names a valid topic. EMQX takes qos, topic and payload from the answer,
/// so a provider that builds a fresh Message downgrades the QoS or publishes to topic ""; the
/// next provider of a chain sees the answer verbatim (contract §0 row 7, §3.3).
pub fn message_kept(exchanges: &[Exchange]) -> Verdict {
    let id = CheckId::MessageKept;
    let mut problems = Vec::new();
    let mut checked = 0;
    for e in exchanges.iter().filter(|e| e.hook == Hook::MessagePublish) {
        let (Answer::Valued(v), Some(sent)) = (&e.answer, &e.sent_message) else { continue };
        if v.r#type == ResponsedType::Ignore as i32 {
            continue;
        }
        let Some(Value::Message(got)) = &v.value else { continue };
        checked += 1;
        let lost = message_differences(sent, got);
        if !lost.is_empty() {
            problems.push(format!(
                "{}: {}: EMQX publishes with the answer's qos and topic, and the next provider sees the answer as is",
                e.label(),
                lost.join(", ")
            ));
        }
    }
    if checked == 0 {
        return Verdict::skip(id, "no message.publish answer returned a message");
    }
    Verdict::from_problems(id, problems, || {
        format!("{checked} returned message{} kept id, from, qos, timestamp, headers", plural(checked))
    })
}

/// What a returned Message lost or broke, compared with the one sent (empty: nothing).
pub fn message_differences(sent: &Message, got: &Message) -> Vec<String> {
    let mut lost = Vec::new();
    if got.id != sent.id {
        lost.push(if got.id.is_empty() { "dropped id".to_owned() } else { format!("changed id to {:?}", got.id) });
    }
    if got.from != sent.from {
        lost.push(if got.from.is_empty() {
            "dropped from".to_owned()
        } else {
            format!("changed from to {:?}", got.from)
        });
    }
    if got.qos != sent.qos {
        lost.push(format!("qos {} became {}", sent.qos, got.qos));
    }
    if got.timestamp != sent.timestamp {
        lost.push(if got.timestamp == 0 { "dropped timestamp".to_owned() } else { "changed timestamp".to_owned() });
    }
    let mut missing: Vec<&str> = sent
        .headers
        .iter()
        .filter(|(k, v)| k.as_str() != "allow_publish" && got.headers.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        lost.push(format!("dropped header{} {}", plural(missing.len()), missing.join(", ")));
    }
    if got.topic.is_empty() {
        lost.push("empty topic".to_owned());
    } else if got.topic.contains(['+', '#']) {
        lost.push(format!("topic {:?} has wildcards", got.topic));
    }
    lost
}

/// `notifications`: every call of a registered notification hook is answered `EmptySuccess`.
/// EMQX waits for the answer inside the client's process and discards it; an error is logged
/// and counted as failed (contract §0 row 3, §3.2). Timeouts are reported by `deadline`.
pub fn notifications(exchanges: &[Exchange]) -> Verdict {
    let id = CheckId::Notifications;
    let calls: Vec<&Exchange> = of_kind(exchanges, HookKind::Notify).collect();
    if calls.is_empty() {
        return Verdict::skip(id, "registers no notification hook");
    }
    let timed_out = calls.iter().filter(|e| e.answer == Answer::TimedOut).count();
    let problems = calls
        .iter()
        .filter(|e| matches!(e.answer, Answer::Error { .. }))
        .map(|e| format!("{}: {}: EMQX logs it and counts the call failed", e.label(), e.answer.describe()))
        .collect();
    let answered = calls.len() - timed_out;
    Verdict::from_problems(id, problems, || {
        format!("{answered} of {} answered{}", calls.len(), timed_out_note(timed_out))
    })
}

/// `deadline`: every call, `OnProviderLoaded` and `OnProviderUnloaded` included, is answered
/// within `timeout` (EMQX's `request_timeout`, 5 s by default, sent as `grpc-timeout`). EMQX
/// then gives up: a valued hook gets `failed_action`, a notification has held the client's
/// process for the whole time (contract §0 rows 3 and 5, §8).
pub fn deadline(exchanges: &[Exchange], timeout: Duration) -> Verdict {
    let id = CheckId::Deadline;
    if exchanges.is_empty() {
        return Verdict::skip(id, "no call made");
    }
    let problems = exchanges
        .iter()
        .filter(|e| e.answer == Answer::TimedOut || e.elapsed > timeout)
        .map(|e| {
            let what = match e.hook.kind() {
                HookKind::Valued => "EMQX applies failed_action (deny by default)",
                HookKind::Notify => "the client's process waited the whole time",
                HookKind::Lifecycle => "EMQX gives up on the call",
            };
            format!("{}: no answer within {}: {what}", e.label(), fmt_duration(timeout))
        })
        .collect();
    Verdict::from_problems(id, problems, || {
        let slowest = exchanges.iter().max_by_key(|e| e.elapsed).map(|e| (e.label(), e.elapsed));
        let (label, elapsed) = slowest.unwrap_or_default();
        format!(
            "{} call{} within {}; slowest {label} {}",
            exchanges.len(),
            plural(exchanges.len()),
            fmt_duration(timeout),
            fmt_duration(elapsed)
        )
    })
}

/// `provider unloaded`: `OnProviderUnloaded` is answered without an error. EMQX sends it when
/// the provider is disabled, deleted or reconfigured, ignores the reply and stops the
/// connections anyway; an error or no answer means the provider's clean-up did not run (or
/// did not confirm) (contract §4.3).
pub fn provider_unloaded(exchange: Option<&Exchange>) -> Verdict {
    let id = CheckId::ProviderUnloaded;
    match exchange.map(|e| &e.answer) {
        None => Verdict::skip(id, "not sent: the provider was not loaded"),
        Some(Answer::Empty) => Verdict::pass(id, "answered EmptySuccess"),
        Some(Answer::TimedOut) => {
            Verdict::fail(id, "no answer within the deadline: EMQX stops the connections without waiting longer")
        }
        Some(other) => Verdict::fail(
            id,
            format!(
                "answered {}: EMQX logs it and stops the connections; the clean-up did not confirm",
                other.describe()
            ),
        ),
    }
}

/// Every check after `from` (in [`CheckId::ALL`] order) skipped with `reason`.
pub fn skip_rest(from: CheckId, reason: &str) -> Vec<Verdict> {
    CheckId::ALL.into_iter().filter(|c| *c > from).map(|c| Verdict::skip(c, reason)).collect()
}

fn type_name(ty: i32) -> String {
    match ResponsedType::try_from(ty) {
        Ok(t) => t.as_str_name().to_owned(),
        Err(_) => format!("type {ty}"),
    }
}

/// `INTERNAL "boom"`, or the code alone when the message is empty.
fn status_text(code: tonic::Code, message: &str) -> String {
    if message.is_empty() { code_name(code).to_owned() } else { format!("{} {message:?}", code_name(code)) }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `5s`, `500ms`, `1.5s`, `3ms`, `120µs`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{}ms", us / 1_000)
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::HookSpec;

    fn spec(name: &str, topics: &[&str]) -> HookSpec {
        HookSpec { name: name.into(), topics: topics.iter().map(|t| t.to_string()).collect() }
    }

    fn loaded(specs: Vec<HookSpec>) -> Exchange {
        Exchange::new(Hook::ProviderLoaded, Answer::Loaded(LoadedResponse { hooks: specs }), Duration::from_millis(1))
    }

    #[test]
    fn hook_names_are_checked_per_package() {
        let e = loaded(vec![spec("client.check_acl", &[]), spec("client.connect", &[])]);
        assert_eq!(provider_loaded(Version::V1, &e, Duration::from_secs(5)).outcome, Outcome::Pass);
        let v = provider_loaded(Version::V3, &e, Duration::from_secs(5));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.reason.contains("\"client.check_acl\" is not a hookpoint of EMQX 5.9+"), "{}", v.reason);
        assert!(v.reason.contains("register \"client.authorize\""), "{}", v.reason);
        let e = loaded(vec![spec("client.nope", &[])]);
        let v = provider_loaded(Version::V2, &e, Duration::from_secs(5));
        assert!(v.reason.contains("unknown hookpoint \"client.nope\""), "{}", v.reason);
        let v = provider_loaded(Version::V2, &loaded(vec![spec("", &[])]), Duration::from_secs(5));
        assert!(v.reason.contains("registers no hook"), "{}", v.reason);
        assert_eq!(
            registered(
                Version::V3,
                &LoadedResponse { hooks: vec![spec("message.publish", &["a/#"]), spec("client.check_acl", &[])] }
            ),
            vec![(Hook::MessagePublish, vec!["a/#".to_owned()])]
        );
    }

    #[test]
    fn filters_only_matter_on_message_hooks() {
        let l = LoadedResponse {
            hooks: vec![spec("message.publish", &["a/#/b", "ok/+"]), spec("client.connect", &["x/#/y"])],
        };
        let v = topic_filters(&l);
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.reason.contains("\"a/#/b\": '#' must be the whole last level"), "{}", v.reason);
        assert!(!v.reason.contains("x/#/y"), "{}", v.reason);
        let l = LoadedResponse { hooks: vec![spec("message.publish", &["ok/+"]), spec("client.connect", &["x"])] };
        assert_eq!(topic_filters(&l).reason, "1 filter valid (topics on client.connect are ignored by EMQX)");
    }

    #[test]
    fn a_returned_message_must_keep_what_emqx_relies_on() {
        let sent = Message {
            id: "ID".into(),
            from: "c1".into(),
            qos: 1,
            topic: "t/1".into(),
            timestamp: 7,
            headers: [("username".to_owned(), "alice".to_owned())].into(),
            ..Default::default()
        };
        let mut rewritten = sent.clone();
        rewritten.topic = "t/2".into();
        rewritten.payload = b"new".to_vec().into();
        rewritten.headers.insert("allow_publish".into(), "false".into());
        assert!(message_differences(&sent, &rewritten).is_empty());
        let fresh = Message { topic: String::new(), ..Default::default() };
        assert_eq!(
            message_differences(&sent, &fresh),
            [
                "dropped id",
                "dropped from",
                "qos 1 became 0",
                "dropped timestamp",
                "dropped header username",
                "empty topic"
            ]
        );
    }

    #[test]
    fn timeouts_are_reported_once_by_deadline() {
        let slow = Exchange::new(Hook::SessionCreated, Answer::TimedOut, Duration::from_millis(500));
        let ok = Exchange::new(Hook::ClientConnect, Answer::Empty, Duration::from_millis(1));
        let all = [ok, slow];
        assert_eq!(notifications(&all).outcome, Outcome::Pass);
        assert_eq!(notifications(&all).reason, "1 of 2 answered; 1 timed out (see deadline)");
        let d = deadline(&all, Duration::from_millis(500));
        assert_eq!(d.outcome, Outcome::Fail);
        assert!(d.reason.starts_with("session.created: no answer within 500ms"), "{}", d.reason);
    }

    #[test]
    fn package_reasons() {
        let probe = PackageProbe {
            asked: Some(Version::V3),
            unimplemented: vec![(Version::V3, "Method not found".into())],
            speaks: Some(Version::V1),
        };
        let v = package(&probe);
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.reason.starts_with("does not serve emqx.exhook.v3"), "{}", v.reason);
        assert!(v.reason.contains("it speaks emqx.exhook.v1 (EMQX 4.x)"), "{}", v.reason);
        let probe =
            PackageProbe { asked: None, unimplemented: vec![(Version::V3, String::new())], speaks: Some(Version::V2) };
        assert_eq!(package(&probe).reason, "serves emqx.exhook.v2 (EMQX 5.0-5.8); not v3");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_micros(80)), "80µs");
    }
}
