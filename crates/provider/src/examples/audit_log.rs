//! Audit logger: connections, authentication attempts, sessions and deliveries as JSON lines
//! (`{"event", "clientid", "username", "peerhost", "extra"}`) written to any `Write`: the
//! example binary appends to `--file`. It writes chosen fields only, never a whole
//! `ClientInfo`, so the password EMQX sends with `client.authenticate` never reaches the log.
//!
//! `cargo run -p exhook-provider --example audit_log -- --listen 127.0.0.1:9001 --file audit.jsonl`

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Value, json};

use exhook_provider::model::{
    ClientAuthenticateRequest, ClientConnectedRequest, ClientDisconnectedRequest, ClientInfo, MessageDeliveredRequest,
    SessionCreatedRequest,
};
use exhook_provider::{Decision, Provider, RequestExt, ignore};

/// Writes one JSON line per event; has no opinion on authentication.
pub struct AuditLog(Mutex<Box<dyn Write + Send>>);

impl AuditLog {
    /// An audit log writing to `out` (a file opened for append, a pipe, a buffer).
    pub fn new(out: impl Write + Send + 'static) -> AuditLog {
        AuditLog(Mutex::new(Box::new(out)))
    }

    fn write(&self, event: &str, c: &ClientInfo, extra: Value) {
        let line = json!({ "event": event, "clientid": c.clientid, "username": c.username,
                           "peerhost": c.peerhost, "extra": extra });
        // One short write per event; the lock is never held across an await.
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!("audit log: {e}");
        }
    }
}

#[exhook_provider::provider]
impl Provider for AuditLog {
    async fn client_authenticate(&self, r: &ClientAuthenticateRequest) -> Decision {
        self.write("authenticate", r.client(), json!({ "result_so_far": r.result }));
        ignore()
    }
    async fn client_connected(&self, r: &ClientConnectedRequest) {
        self.write("connected", r.client(), Value::Null);
    }
    async fn client_disconnected(&self, r: &ClientDisconnectedRequest) {
        self.write("disconnected", r.client(), json!({ "reason": r.reason }));
    }
    async fn session_created(&self, r: &SessionCreatedRequest) {
        self.write("session_created", r.client(), Value::Null);
    }
    async fn message_delivered(&self, r: &MessageDeliveredRequest) {
        self.write("delivered", r.client(), json!({ "topic": r.msg().topic, "id": r.msg().id }));
    }
}
