//! Calls to one plugin, read the way dockerd reads them and a little more patiently: success
//! is HTTP 200 with a JSON body, where an empty body, `{}`, `null` and `{"Err": ""}` all mean
//! plain success; an `Err` (network drivers) or `Error` (IPAM) that is not empty is a refusal,
//! also with a non-200 status, whose body may be `{"Err": ...}` or plain text; 404 means the
//! call is not implemented. Every call has a deadline; a plugin that is not listening is
//! looked for again (it may have restarted on a new socket) and activated again until then.

use crate::discovery::{Discovery, PluginAddr};
use crate::messages::{canonical, ActivateResponse};
use crate::transport::{post, TransportError};
use plumb_core::driver::{PluginFailure, PluginFailureKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The plugin could not be reached before the deadline.
    Unreachable(String),
    /// It was reached but did not answer before the deadline.
    Timeout(Duration),
    /// It does not implement the call (404).
    NotImplemented,
    /// It answered and said no.
    Refused(String),
    /// It answered something that is not the protocol (the field is named).
    BadAnswer(String),
}

/// A failed call, naming the plugin and the call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {call}: {}", describe(.kind))]
pub struct CallError {
    /// The plugin.
    pub plugin: String,
    /// The call (`NetworkDriver.Join`).
    pub call: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

/// What went wrong, in words (the text of [`CallError`] after the plugin and call).
pub(crate) fn describe(k: &CallErrorKind) -> String {
    match k {
        CallErrorKind::Unreachable(why) => format!("unreachable: {why}"),
        CallErrorKind::Timeout(d) => format!("no answer within {} ms", d.as_millis()),
        CallErrorKind::NotImplemented => "not implemented by the plugin (404)".into(),
        CallErrorKind::Refused(msg) => format!("refused: {msg}"),
        CallErrorKind::BadAnswer(what) => format!("invalid answer: {what}"),
    }
}

impl CallError {
    /// As the controller takes it: refused (403) or unavailable (503), the text kept.
    pub fn boxed(self) -> plumb_core::BoxError {
        let kind = match self.kind {
            CallErrorKind::Refused(_) => PluginFailureKind::Refused,
            _ => PluginFailureKind::Unavailable,
        };
        Box::new(PluginFailure {
            kind,
            message: self.to_string(),
        })
    }
}

/// A plugin, as found by discovery: its address (found again if it moves) and deadline.
pub struct PluginClient {
    name: String,
    discovery: Discovery,
    addr: Mutex<PluginAddr>,
    timeout: Duration,
}

impl PluginClient {
    /// A client of the plugin `name` at `addr`, found by `discovery`, each call within
    /// `timeout`.
    pub fn new(name: &str, addr: PluginAddr, discovery: Discovery, timeout: Duration) -> Self {
        PluginClient {
            name: name.to_owned(),
            discovery,
            addr: Mutex::new(addr),
            timeout,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens now.
    pub fn addr(&self) -> PluginAddr {
        self.addr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn err(&self, call: &str, kind: CallErrorKind) -> CallError {
        CallError {
            plugin: self.name.clone(),
            call: call.to_owned(),
            kind,
        }
    }

    /// `Plugin.Activate`: the subsystems it implements.
    pub async fn activate(&self) -> Result<Vec<String>, CallError> {
        let deadline = Instant::now() + self.timeout;
        let r: ActivateResponse = self.call_until("Plugin.Activate", None, deadline).await?;
        Ok(r.implements)
    }

    /// Calls `method` with `req` (None: an empty body) and reads the answer as `R`.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        req: Option<&Q>,
    ) -> Result<R, CallError> {
        let body = match req {
            Some(q) => Some(serde_json::to_vec(q).map_err(|e| {
                self.err(method, CallErrorKind::BadAnswer(format!("request: {e}")))
            })?),
            None => None,
        };
        self.call_until(method, body, Instant::now() + self.timeout)
            .await
    }

    async fn call_until<R: DeserializeOwned>(
        &self,
        method: &str,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<R, CallError> {
        let mut pause = Duration::from_millis(50);
        let mut moved = false;
        loop {
            if moved && method != "Plugin.Activate" {
                // It was not listening: activated again (when it is back) before it is used.
                Box::pin(self.call_until::<ActivateResponse>("Plugin.Activate", None, deadline))
                    .await?;
            }
            let addr = self.addr();
            let left = deadline.saturating_duration_since(Instant::now());
            let sent =
                tokio::time::timeout(left, post(&addr, method, body.clone().unwrap_or_default()));
            match sent.await {
                Err(_) => return Err(self.err(method, CallErrorKind::Timeout(self.timeout))),
                Ok(Ok(answer)) => return self.read_answer(method, answer.status, &answer.body),
                Ok(Err(TransportError::Connect(to, e))) => {
                    // Not listening (yet, or any more): look for it again until the deadline.
                    if let Ok(Some(a)) = self.discovery.find(&self.name) {
                        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = a;
                    }
                    if Instant::now() + pause >= deadline {
                        let why = format!("cannot connect to {to}: {e}");
                        return Err(self.err(method, CallErrorKind::Unreachable(why)));
                    }
                    tokio::time::sleep(pause).await;
                    moved = true;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Ok(Err(e)) => {
                    return Err(self.err(method, CallErrorKind::Unreachable(e.to_string())))
                }
            }
        }
    }

    fn read_answer<R: DeserializeOwned>(
        &self,
        method: &str,
        status: u16,
        body: &[u8],
    ) -> Result<R, CallError> {
        let text = String::from_utf8_lossy(body);
        if status == 404 {
            return Err(self.err(method, CallErrorKind::NotImplemented));
        }
        let parsed: Option<Value> = if text.trim().is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_str(text.trim()).ok()
        };
        if status != 200 {
            let msg = parsed
                .as_ref()
                .and_then(error_text)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| excerpt(&text));
            let msg = if msg.is_empty() {
                format!("HTTP {status}")
            } else {
                msg
            };
            return Err(self.err(method, CallErrorKind::Refused(msg)));
        }
        let Some(v) = parsed else {
            let what = format!("not JSON: {:?}", excerpt(&text));
            return Err(self.err(method, CallErrorKind::BadAnswer(what)));
        };
        let v = match canonical(v) {
            Value::Null => Value::Object(Default::default()),
            v @ Value::Object(_) => v,
            other => {
                let what = format!("expected a JSON object, got {}", kind_of(&other));
                return Err(self.err(method, CallErrorKind::BadAnswer(what)));
            }
        };
        for field in ["Err", "Error"] {
            match v.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => {
                    return Err(self.err(method, CallErrorKind::Refused(excerpt(s))))
                }
                Some(other) => {
                    let what = format!("{field} must be a string, got {}", kind_of(other));
                    return Err(self.err(method, CallErrorKind::BadAnswer(what)));
                }
            }
        }
        serde_path_to_error::deserialize(v).map_err(|e| {
            let what = format!("field {}: {}", e.path(), e.inner());
            self.err(method, CallErrorKind::BadAnswer(what))
        })
    }
}

/// The `Err` (or `Error`) text of an error body.
fn error_text(v: &Value) -> Option<String> {
    let v = canonical(v.clone());
    ["Err", "Error"]
        .iter()
        .find_map(|f| v.get(f).and_then(Value::as_str).map(excerpt))
}

/// At most 300 characters of a plugin's text, on one line.
fn excerpt(s: &str) -> String {
    let one: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::RequestAddressResponse;

    fn client() -> PluginClient {
        PluginClient::new(
            "p",
            PluginAddr::Tcp("127.0.0.1:1".into()),
            Discovery::new(Vec::new()),
            Duration::from_secs(1),
        )
    }

    fn read(status: u16, body: &str) -> Result<RequestAddressResponse, CallErrorKind> {
        client()
            .read_answer("IpamDriver.RequestAddress", status, body.as_bytes())
            .map_err(|e| e.kind)
    }

    #[test]
    fn answers_real_plugins_give_are_read_like_dockerd_reads_them() {
        for ok in [
            "",
            "{}",
            "null",
            "{\"Err\":\"\"}",
            "{}\n",
            "{\"Error\": null}",
        ] {
            assert!(read(200, ok).is_ok(), "{ok:?}");
        }
        let a = read(200, r#"{"address": "10.0.0.5/24", "Extra": [1]}"#).unwrap();
        assert_eq!(a.address, "10.0.0.5/24");
        assert_eq!(
            read(200, r#"{"Error": "pool full"}"#).unwrap_err(),
            CallErrorKind::Refused("pool full".into())
        );
        assert_eq!(
            read(500, r#"{"Err": "no"}"#).unwrap_err(),
            CallErrorKind::Refused("no".into())
        );
        assert_eq!(
            read(500, "plain text\n").unwrap_err(),
            CallErrorKind::Refused("plain text".into())
        );
        assert_eq!(read(404, "").unwrap_err(), CallErrorKind::NotImplemented);
        let bad = read(200, "{not json").unwrap_err();
        assert!(
            matches!(bad, CallErrorKind::BadAnswer(ref w) if w.contains("not JSON")),
            "{bad:?}"
        );
        let bad = read(200, r#"{"Address": 5}"#).unwrap_err();
        assert!(
            matches!(bad, CallErrorKind::BadAnswer(ref w) if w.contains("Address")),
            "{bad:?}"
        );
        let bad = read(200, r#"{"Err": 3}"#).unwrap_err();
        assert!(matches!(bad, CallErrorKind::BadAnswer(_)), "{bad:?}");
        let bad = read(200, "[1]").unwrap_err();
        assert!(matches!(bad, CallErrorKind::BadAnswer(_)), "{bad:?}");
    }
}
