//! Live decision traces: `GET /api/v1/trace?clientid=…` (server-sent events) and the
//! `exhook-gateway trace` command.
//!
//! [`TraceHub`] is the gateway's [`Observer`]. Rules:
//! * **Free when nobody looks.** [`Observer::tracing`] is one relaxed atomic load of the number
//!   of open viewers; at 0 the server asks nothing else, and every other method returns after
//!   the same load. The benchmark `benches/benches/trace.rs` measures both cases.
//! * **Matched once per call.** When a viewer is open, [`Observer::trace`] compares the call's
//!   [`Subject`] with every viewer's [`TraceFilter`] (under a short lock, never held across an
//!   `.await`) and, if any matches, returns a [`CallTrace`]: the call's id, who it is about and
//!   the matching viewers. The call's later events read it from the task-local context.
//! * **Bounded, never blocking.** Each viewer has a bounded queue ([`TraceHub::with_capacity`],
//!   default [`DEFAULT_CAPACITY`] events); an event that does not fit is dropped and counted —
//!   for the viewer (told as an `event: dropped` with the count, before its next event) and in
//!   `exhook_gateway_trace_dropped_total`. EMQX's call never waits for a viewer.
//! * **Never a secret.** An event carries the clientid, username, topic, provider names,
//!   outcomes and timings; a message is described (topic, qos, payload size), never copied;
//!   the password is never read ([`Subject`] has no field for it).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use exhook_chain::Ending;
use exhook_hooks::Hook;
use exhook_metrics::Metrics;
use exhook_proto::model::ValuedResponse;
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_server::Observer;
use exhook_server::observe::{
    CallEvent, MemberMode, ShadowEvent, StepEvent, StepResult, Subject, TraceContext, with_trace,
};
use serde::Serialize;
use tokio::sync::mpsc;

/// Events queued per viewer before new ones are dropped (and counted).
pub const DEFAULT_CAPACITY: usize = 1024;

/// Viewers open at once, over the process (a further request is refused with 503).
pub const MAX_VIEWERS: usize = 16;

/// Which calls a viewer wants: every given field must match (at least one is given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TraceFilter {
    /// The clientid (exactly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clientid: Option<String>,
    /// The username (exactly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A topic or MQTT topic filter (`a/#`): matches a call whose topic it matches, or a
    /// subscribe/unsubscribe naming this filter or a topic it matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// Why a trace request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Neither clientid, username nor topic: tracing everything is not offered.
    #[error("give at least one of clientid, username, topic")]
    Empty,
    /// A parameter the API does not know (a typo must not widen a trace).
    #[error("unknown parameter {0:?} (expected clientid, username, topic)")]
    Unknown(String),
    /// A value that is not valid percent-encoded UTF-8.
    #[error("{0}: bad percent-encoding")]
    Encoding(String),
    /// A topic filter that is not valid MQTT.
    #[error("topic: {0}")]
    Topic(String),
}

impl TraceFilter {
    /// Parses the query string of `GET /api/v1/trace`.
    pub fn parse(query: Option<&str>) -> Result<TraceFilter, FilterError> {
        let mut f = TraceFilter::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = crate::percent_decode(v).ok_or_else(|| FilterError::Encoding(k.to_owned()))?;
            let slot = match k {
                "clientid" => &mut f.clientid,
                "username" => &mut f.username,
                "topic" => &mut f.topic,
                other => return Err(FilterError::Unknown(other.to_owned())),
            };
            *slot = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(t) = &f.topic {
            exhook_topic::validate_filter(t).map_err(|e| FilterError::Topic(e.to_string()))?;
        }
        if f.clientid.is_none() && f.username.is_none() && f.topic.is_none() {
            return Err(FilterError::Empty);
        }
        Ok(f)
    }

    /// Whether a call about `s` is wanted.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let clientid = self.clientid.as_deref().is_none_or(|c| c == s.clientid);
        let username = self.username.as_deref().is_none_or(|u| u == s.username);
        let topic = self.topic.as_deref().is_none_or(|want| {
            s.topic.is_some_and(|t| exhook_topic::filter_matches(want, t))
                || s.filters.iter().any(|f| f.name == want || exhook_topic::filter_matches(want, &f.name))
        });
        clientid && username && topic
    }
}

/// One line of a trace, as sent to viewers (JSON in an SSE `data:` line).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TraceEvent {
    /// The call's number (every event of one EMQX call shares it).
    pub call: u64,
    /// When (RFC 3339, milliseconds).
    pub at: String,
    /// `received` (EMQX called), `step` (a provider's turn), `shadow` (a shadow's verdict),
    /// `answer` (what EMQX got back).
    pub kind: Cow<'static, str>,
    /// Tenant.
    pub tenant: String,
    /// Hook, EMQX 5.x spelling.
    pub hook: Cow<'static, str>,
    /// The client.
    pub clientid: String,
    /// Its username (`received` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The topic the call is about (`received` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The provider (`step`, `shadow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// How it takes part: `decisive`, `shadow`, `observe` (`step`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Cow<'static, str>>,
    /// What happened: `continue`, `stop`, `ignore`, `failed (denied)`, `skipped: filter`,
    /// `cache hit: stop`, `agree`, … (see [`step_outcome`]).
    pub outcome: String,
    /// More about it: the value answered, the error, how the chain ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Time taken in microseconds (a call's, or the whole answer's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_us: Option<u64>,
}

impl TraceEvent {
    /// One readable line (what `exhook-gateway trace` prints).
    pub fn line(&self) -> String {
        let time = self.at.get(11..23).unwrap_or(&self.at);
        let mut line = format!("{time} #{} {} {} {}", self.call, self.tenant, self.hook, self.clientid);
        match &*self.kind {
            "received" => {
                line.push_str(" ← EMQX");
                if let Some(u) = self.username.as_deref().filter(|u| !u.is_empty()) {
                    line.push_str(&format!(" username={u}"));
                }
                if let Some(t) = &self.topic {
                    line.push_str(&format!(" topic={t}"));
                }
            }
            "answer" => line.push_str(&format!(" → EMQX: {}", self.outcome)),
            _ => {
                let provider = self.provider.as_deref().unwrap_or("?");
                let mode =
                    self.mode.as_deref().filter(|m| *m != "decisive").map(|m| format!(" ({m})")).unwrap_or_default();
                let kind = if self.kind == "shadow" { " verdict" } else { "" };
                line.push_str(&format!("   {provider}{mode}{kind}: {}", self.outcome));
            }
        }
        if let Some(d) = &self.detail {
            line.push_str(&format!(" [{d}]"));
        }
        if let Some(us) = self.elapsed_us {
            line.push_str(&format!(" {}", fmt_micros(us)));
        }
        line
    }
}

fn fmt_micros(us: u64) -> String {
    if us < 1000 { format!("{us}µs") } else { format!("{:.1}ms", us as f64 / 1000.0) }
}

/// One open viewer.
#[derive(Debug)]
pub struct Viewer {
    id: u64,
    filter: TraceFilter,
    tx: mpsc::Sender<Arc<TraceEvent>>,
    /// Dropped since last told to the viewer.
    dropped: AtomicU64,
    /// Dropped in all.
    dropped_total: AtomicU64,
}

impl Viewer {
    /// Takes the number of events dropped since the last call (to tell the viewer).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Events dropped since the viewer opened.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// The viewer's filter.
    pub fn filter(&self) -> &TraceFilter {
        &self.filter
    }
}

/// A traced call: what its events need, carried in the call's task-local context.
#[derive(Debug)]
pub struct CallTrace {
    id: u64,
    tenant: String,
    hook: Hook,
    clientid: String,
    viewers: Vec<Arc<Viewer>>,
}

/// The trace hub: the gateway's observer, and the registry of open viewers.
#[derive(Debug)]
pub struct TraceHub {
    /// Viewers open: the one thing read on every call.
    open: AtomicUsize,
    viewers: Mutex<Vec<Arc<Viewer>>>,
    next_viewer: AtomicU64,
    next_call: AtomicU64,
    capacity: usize,
    metrics: OnceLock<Arc<Metrics>>,
}

impl Default for TraceHub {
    fn default() -> Self {
        TraceHub::with_capacity(DEFAULT_CAPACITY)
    }
}

impl TraceHub {
    /// A hub whose viewers each queue at most `capacity` events.
    pub fn with_capacity(capacity: usize) -> TraceHub {
        TraceHub {
            open: AtomicUsize::new(0),
            viewers: Mutex::new(Vec::new()),
            next_viewer: AtomicU64::new(1),
            next_call: AtomicU64::new(1),
            capacity: capacity.max(1),
            metrics: OnceLock::new(),
        }
    }

    /// Counts dropped events in `metrics` (`exhook_gateway_trace_dropped_total`); the first
    /// call wins.
    pub fn attach_metrics(&self, metrics: &Arc<Metrics>) {
        let _ = self.metrics.set(Arc::clone(metrics));
    }

    /// Opens a viewer: its handle (dropping it closes the viewer) and its events. `None` when
    /// [`MAX_VIEWERS`] are open.
    pub fn open(self: &Arc<Self>, filter: TraceFilter) -> Option<(ViewerGuard, mpsc::Receiver<Arc<TraceEvent>>)> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let viewer = Arc::new(Viewer {
            id: self.next_viewer.fetch_add(1, Ordering::Relaxed),
            filter,
            tx,
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        });
        let mut viewers = self.lock();
        if viewers.len() >= MAX_VIEWERS {
            return None;
        }
        viewers.push(Arc::clone(&viewer));
        self.open.store(viewers.len(), Ordering::Relaxed);
        Some((ViewerGuard { hub: Arc::clone(self), viewer }, rx))
    }

    /// Viewers open now.
    pub fn viewers(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Viewer>>> {
        self.viewers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close(&self, id: u64) {
        let mut viewers = self.lock();
        viewers.retain(|v| v.id != id);
        self.open.store(viewers.len(), Ordering::Relaxed);
    }

    /// Sends `event` to the call's viewers; a full queue drops it and counts it.
    fn emit(&self, call: &CallTrace, event: TraceEvent) {
        let event = Arc::new(event);
        for v in &call.viewers {
            if let Err(mpsc::error::TrySendError::Full(_)) = v.tx.try_send(Arc::clone(&event)) {
                v.dropped.fetch_add(1, Ordering::Relaxed);
                v.dropped_total.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.trace_dropped(1);
                }
            }
        }
    }

    /// The current call's trace, if it is traced (and any viewer is still open).
    fn current<T>(&self, f: impl FnOnce(&CallTrace) -> T) -> Option<T> {
        if self.open.load(Ordering::Relaxed) == 0 {
            return None;
        }
        with_trace(|ctx| ctx.downcast_ref::<CallTrace>().map(f)).flatten()
    }

    fn event(call: &CallTrace, kind: &'static str, outcome: String) -> TraceEvent {
        TraceEvent {
            call: call.id,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind: Cow::Borrowed(kind),
            tenant: call.tenant.clone(),
            hook: Cow::Borrowed(call.hook.name()),
            clientid: call.clientid.clone(),
            username: None,
            topic: None,
            provider: None,
            mode: None,
            outcome,
            detail: None,
            elapsed_us: None,
        }
    }
}

/// An open viewer; dropping it closes the viewer (the SSE stream ended: the client left).
#[derive(Debug)]
pub struct ViewerGuard {
    hub: Arc<TraceHub>,
    viewer: Arc<Viewer>,
}

impl ViewerGuard {
    /// The viewer.
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.hub.close(self.viewer.id);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What a step's result reads as in a trace: its outcome and an optional detail.
pub fn step_outcome(result: &StepResult<'_>, cached: bool) -> (String, Option<String>) {
    let (outcome, detail) = match result {
        StepResult::SkippedNotLoaded => ("skipped: not loaded".to_owned(), None),
        StepResult::SkippedNotRegistered => ("skipped: not registered".to_owned(), None),
        StepResult::SkippedFiltered => ("skipped: filter".to_owned(), None),
        StepResult::Answered(o, value) => {
            (exhook_server::outcome_name(*o).to_owned(), value.and_then(|v| v.value.as_ref()).map(describe_value))
        }
        StepResult::Delivered => ("delivered".to_owned(), None),
        StepResult::Queued => ("queued".to_owned(), None),
        StepResult::Dropped => ("dropped: queue full".to_owned(), None),
        StepResult::Failed(e, o) => {
            let what = match e.result() {
                exhook_metrics::CallResult::BreakerOpen => "breaker open".to_owned(),
                exhook_metrics::CallResult::Shed => "shed".to_owned(),
                r => r.as_str().to_owned(),
            };
            let outcome = match o {
                Some(o) => format!("{what} → {}", exhook_server::outcome_name(*o)),
                None => what,
            };
            (outcome, Some(e.to_string()))
        }
    };
    if cached { (format!("cache hit: {outcome}"), detail) } else { (outcome, detail) }
}

/// A value as a trace shows it: `allow`/`deny`, or a message's topic, qos and payload size
/// (never the payload).
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::BoolResult(true) => "allow".to_owned(),
        Value::BoolResult(false) => "deny".to_owned(),
        Value::Message(m) => format!("topic={} qos={} payload={}B", m.topic, m.qos, m.payload.len()),
    }
}

/// What EMQX got back, as a trace shows it.
pub fn describe_answer(response: &ValuedResponse, ending: Ending, chain: Option<&[String]>) -> (String, String) {
    let kind = match ResponsedType::try_from(response.r#type) {
        Ok(ResponsedType::Continue) => "CONTINUE",
        Ok(ResponsedType::Ignore) => "IGNORE",
        Ok(ResponsedType::StopAndReturn) => "STOP_AND_RETURN",
        Err(_) => "?",
    };
    let value = response.value.as_ref().map(describe_value).map(|v| format!(" {v}")).unwrap_or_default();
    let name = |pos: usize| chain.and_then(|c| c.get(pos)).map_or_else(|| format!("#{pos}"), Clone::clone);
    let ending = match ending {
        Ending::AllIgnored => "every provider ignored".to_owned(),
        Ending::Continued => "ran to the end".to_owned(),
        Ending::StoppedBy(pos) => format!("stopped by {}", name(pos)),
        Ending::DeniedByFailure(pos) => format!("denied by failure of {}", name(pos)),
    };
    (format!("{kind}{value}"), ending)
}

impl Observer for TraceHub {
    fn wants_values(&self) -> bool {
        // The server copies answers for the observer only for a traced call (asked inside the
        // call's future, where its trace context is readable).
        self.open.load(Ordering::Relaxed) > 0 && with_trace(|_| ()).is_some()
    }

    fn tracing(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    fn trace(&self, tenant: &str, hook: Hook, subject: &Subject<'_>) -> Option<TraceContext> {
        let viewers: Vec<Arc<Viewer>> =
            self.lock().iter().filter(|v| v.filter.matches(subject)).map(Arc::clone).collect();
        if viewers.is_empty() {
            return None;
        }
        let call = CallTrace {
            id: self.next_call.fetch_add(1, Ordering::Relaxed),
            tenant: tenant.to_owned(),
            hook,
            clientid: subject.clientid.to_owned(),
            viewers,
        };
        let mut e = TraceHub::event(&call, "received", String::new());
        e.username = Some(subject.username.to_owned());
        e.topic = subject.topic.map(str::to_owned).or_else(|| {
            (!subject.filters.is_empty())
                .then(|| subject.filters.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(" "))
        });
        self.emit(&call, e);
        Some(Arc::new(call))
    }

    fn step(&self, event: &StepEvent<'_>) {
        self.current(|call| {
            let (outcome, detail) = step_outcome(&event.result, event.cached);
            let mut e = TraceHub::event(call, "step", outcome);
            e.provider = Some(event.provider.to_owned());
            e.mode = Some(Cow::Borrowed(event.mode.as_str()));
            e.detail = detail;
            let called = !event.cached && !event.elapsed.is_zero();
            e.elapsed_us = called.then(|| micros(event.elapsed));
            self.emit(call, e);
        });
    }

    fn shadow(&self, event: &ShadowEvent<'_>) {
        self.current(|call| {
            let mut e = TraceHub::event(call, "shadow", event.verdict.as_str().to_owned());
            e.provider = Some(event.provider.to_owned());
            e.mode = Some(Cow::Borrowed(MemberMode::Shadow.as_str()));
            e.elapsed_us = Some(micros(event.elapsed));
            self.emit(call, e);
        });
    }

    fn call(&self, event: &CallEvent<'_>) {
        self.current(|call| {
            let (outcome, detail) = match event.valued {
                Some((response, ending)) => {
                    let (answer, ending) = describe_answer(response, ending, None);
                    (answer, Some(ending))
                }
                None => ("ack".to_owned(), None),
            };
            let mut e = TraceHub::event(call, "answer", outcome);
            e.detail = detail;
            e.elapsed_us = Some(micros(event.elapsed));
            self.emit(call, e);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::{self, TopicFilter};
    use exhook_server::observe::{in_scope, trace_scope};

    fn authn(clientid: &str, username: &str, password: &str) -> model::ClientAuthenticateRequest {
        model::ClientAuthenticateRequest {
            clientinfo: Some(model::ClientInfo {
                clientid: clientid.into(),
                username: username.into(),
                password: password.into(),
                ..Default::default()
            }),
            result: true,
            meta: None,
        }
    }

    fn filter(q: &str) -> TraceFilter {
        TraceFilter::parse(Some(q)).unwrap()
    }

    #[test]
    fn filters_parse_and_refuse_what_would_widen_a_trace() {
        assert_eq!(filter("clientid=dev%2F1").clientid.as_deref(), Some("dev/1"));
        assert_eq!(TraceFilter::parse(None), Err(FilterError::Empty));
        assert_eq!(TraceFilter::parse(Some("clientid=")), Err(FilterError::Empty));
        assert_eq!(TraceFilter::parse(Some("client=x")), Err(FilterError::Unknown("client".into())));
        assert!(matches!(TraceFilter::parse(Some("topic=a/#/b")), Err(FilterError::Topic(_))));
    }

    #[test]
    fn filters_match_clientid_username_and_topics() {
        let s = Subject { clientid: "c1", username: "u1", topic: Some("a/b"), filters: &[] };
        assert!(filter("clientid=c1").matches(&s));
        assert!(!filter("clientid=c2").matches(&s));
        assert!(filter("clientid=c1&username=u1").matches(&s));
        assert!(!filter("clientid=c1&username=u2").matches(&s), "every given field must match");
        assert!(filter("topic=a/%23").matches(&s));
        assert!(!filter("topic=b/%23").matches(&s));
        let filters = [TopicFilter { name: "a/+".into(), ..Default::default() }];
        let sub = Subject { clientid: "c1", username: "", topic: None, filters: &filters };
        assert!(filter("topic=a/%2B").matches(&sub), "the subscribed filter itself");
        assert!(filter("topic=%23").matches(&sub), "a filter covering it");
        assert!(!filter("topic=a/b").matches(&Subject { topic: None, ..s }));
    }

    #[test]
    fn the_subject_never_holds_the_password() {
        let r = authn("c1", "u1", "s3cret");
        let s = Subject::of(&r);
        assert_eq!((s.clientid, s.username), ("c1", "u1"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let authz = model::ClientAuthorizeRequest {
            clientinfo: r.clientinfo.clone(),
            topic: "t/1".into(),
            ..Default::default()
        };
        assert_eq!(Subject::of(&authz).topic, Some("t/1"));
        let mut m = model::Message { from: "pub".into(), topic: "x/y".into(), ..Default::default() };
        m.headers.insert("username".into(), "u9".into());
        let publish = model::MessagePublishRequest { message: Some(m), ..Default::default() };
        let s = Subject::of(&publish);
        assert_eq!((s.clientid, s.username, s.topic), ("pub", "u9", Some("x/y")));
    }

    /// Runs `f` as a traced call of `request` (as the server does), collecting nothing itself.
    async fn traced_call(hub: &Arc<TraceHub>, request: &model::ClientAuthenticateRequest, f: impl FnOnce()) {
        let scope = trace_scope(&**hub, "default", request);
        in_scope(scope, async { f() }).await;
    }

    fn answer(hub: &TraceHub) {
        let response =
            ValuedResponse { r#type: ResponsedType::StopAndReturn as i32, value: Some(Value::BoolResult(false)) };
        hub.call(&CallEvent {
            tenant: "default",
            hook: Hook::ClientAuthenticate,
            valued: Some((&response, Ending::StoppedBy(0))),
            elapsed: Duration::from_micros(250),
        });
    }

    #[tokio::test]
    async fn matching_calls_reach_every_matching_viewer_and_nothing_else() {
        let hub = Arc::new(TraceHub::default());
        // No viewer: nothing is traced, no context.
        assert!(!hub.tracing());
        assert!(trace_scope(&*hub, "default", &authn("c1", "u", "pw")).is_none());
        let (g1, mut rx1) = hub.open(filter("clientid=c1")).unwrap();
        let (g2, mut rx2) = hub.open(filter("username=u")).unwrap();
        assert_eq!(hub.viewers(), 2);
        traced_call(&hub, &authn("c1", "u", "s3cret"), || answer(&hub)).await;
        traced_call(&hub, &authn("c2", "other", "s3cret"), || answer(&hub)).await;
        // Outside any traced call an event goes nowhere.
        answer(&hub);
        let got1: Vec<_> = std::iter::from_fn(|| rx1.try_recv().ok()).collect();
        let got2: Vec<_> = std::iter::from_fn(|| rx2.try_recv().ok()).collect();
        assert_eq!(got1.iter().map(|e| &*e.kind).collect::<Vec<_>>(), ["received", "answer"]);
        assert_eq!(got1, got2, "both viewers see the same call");
        assert_eq!(got1[1].outcome, "STOP_AND_RETURN deny");
        assert_eq!(got1[1].detail.as_deref(), Some("stopped by #0"));
        for e in &got1 {
            let json = serde_json::to_string(&**e).unwrap();
            assert!(!json.contains("s3cret") && !e.line().contains("s3cret"), "{json}");
        }
        drop((g1, g2));
        assert_eq!(hub.viewers(), 0);
        assert!(!hub.tracing());
    }

    #[tokio::test]
    async fn a_slow_viewer_loses_events_counted_never_blocking() {
        let hub = Arc::new(TraceHub::with_capacity(2));
        let metrics = Metrics::new();
        hub.attach_metrics(&metrics);
        let (guard, mut rx) = hub.open(filter("clientid=c1")).unwrap();
        for _ in 0..5 {
            traced_call(&hub, &authn("c1", "", ""), || answer(&hub)).await;
        }
        // 10 events, 2 queued.
        assert_eq!(guard.viewer().dropped_total(), 8);
        assert_eq!(guard.viewer().take_dropped(), 8);
        assert_eq!(guard.viewer().take_dropped(), 0, "told once");
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2);
        assert!(metrics.encode().contains("exhook_gateway_trace_dropped_total 8"));
    }

    #[test]
    fn viewers_are_bounded() {
        let hub = Arc::new(TraceHub::default());
        let open: Vec<_> = (0..MAX_VIEWERS).map(|_| hub.open(filter("clientid=x")).unwrap()).collect();
        assert!(hub.open(filter("clientid=x")).is_none());
        drop(open);
        assert!(hub.open(filter("clientid=x")).is_some());
    }

    #[test]
    fn lines_are_readable() {
        let e = TraceEvent {
            call: 7,
            at: "2026-12-01T14:00:00.123Z".into(),
            kind: "step".into(),
            tenant: "default".into(),
            hook: "client.authenticate".into(),
            clientid: "c1".into(),
            username: None,
            topic: None,
            provider: Some("auth-v2".into()),
            mode: Some("shadow".into()),
            outcome: "stop".into(),
            detail: Some("deny".into()),
            elapsed_us: Some(1500),
        };
        assert_eq!(e.line(), "14:00:00.123 #7 default client.authenticate c1   auth-v2 (shadow): stop [deny] 1.5ms");
    }
}
