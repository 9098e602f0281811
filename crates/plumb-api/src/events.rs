//! `GET /events`: Docker's event stream for network (and sandbox) events, with history for
//! `since`, a deadline for `until`, and `filters`.

use crate::error::ApiError;
use crate::filters::{parse_time, Filters};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use plumb_core::events::{now_nanos, Event};
use plumb_core::Controller;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events kept for `since`.
const HISTORY: usize = 4096;

/// The event history and live feed.
pub struct EventLog {
    live: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// Starts recording the controller's events (spawns a task on the current runtime).
    pub fn start(ctl: &Controller) -> Arc<Self> {
        let log = Arc::new(EventLog {
            live: broadcast::channel(1024).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        });
        let mut rx = ctl.subscribe();
        let weak = Arc::downgrade(&log);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event log fell behind");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(log) = weak.upgrade() else { return };
                {
                    let mut h = log.history.lock().unwrap_or_else(|p| p.into_inner());
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back(ev.clone());
                }
                let _ = log.live.send(ev);
            }
        });
        log
    }

    fn replay(&self, since: u128, until: Option<u128>) -> Vec<Event> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter()
            .filter(|e| e.time_nanos >= since && until.is_none_or(|u| e.time_nanos <= u))
            .cloned()
            .collect()
    }
}

/// Query of `GET /events`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// Keys accepted in `filters`.
const KEYS: &[&str] = &["type", "event", "network", "container", "scope", "label"];

fn matches(f: &Filters, e: &Event) -> bool {
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        f.get(key).is_none_or(|vals| vals.iter().any(|v| test(v)))
    };
    any("type", &|v| v == e.kind)
        && any("event", &|v| v == e.action)
        && any("network", &|v| {
            e.kind == "network"
                && (v == e.actor_id || v == attr("name") || e.actor_id.starts_with(v))
        })
        && any("container", &|v| {
            v == attr("container")
                || (e.kind == "sandbox" && (v == e.actor_id || v == attr("name")))
        })
        && any("scope", &|v| v == "local")
        && f.get("label").is_none_or(|vals| {
            vals.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => attr(k) == v,
                None => e.attributes.contains_key(l),
            })
        })
}

/// One event as a line of Docker's stream.
pub fn docker_json(e: &Event) -> serde_json::Value {
    json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": {"ID": e.actor_id, "Attributes": e.attributes},
        "scope": "local",
        "time": (e.time_nanos / 1_000_000_000) as u64,
        "timeNano": e.time_nanos as u64,
    })
}

fn line(e: &Event) -> Bytes {
    let mut v = docker_json(e).to_string().into_bytes();
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /events`.
pub async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let now = now_nanos();
    let filters = Filters::parse(q.filters.as_deref(), KEYS)?;
    let since = q.since.as_deref().map(|v| parse_time(v, now)).transpose()?;
    let until = q.until.as_deref().map(|v| parse_time(v, now)).transpose()?;
    // Subscribe before reading the history, then skip live events the history already had.
    let rx = s.events.live.subscribe();
    let past: Vec<Event> = match since {
        Some(t) => s.events.replay(t, until),
        None => Vec::new(),
    };
    let last_replayed = past.last().map(|e| e.time_nanos).unwrap_or(0);
    let past: Vec<Result<Bytes, std::convert::Infallible>> = past
        .iter()
        .filter(|e| matches(&filters, e))
        .map(|e| Ok(line(e)))
        .collect();
    let live_until = match until {
        Some(u) if u <= now => None,
        other => Some(other),
    };
    let live = futures::stream::unfold(
        (rx, live_until, filters),
        move |(mut rx, deadline, filters)| async move {
            let deadline = deadline?;
            loop {
                let wait =
                    deadline.map(|u| Duration::from_nanos(u.saturating_sub(now_nanos()) as u64));
                let next = match wait {
                    Some(w) => match tokio::time::timeout(w, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(e) if e.time_nanos <= last_replayed => continue,
                    Ok(e) if deadline.is_some_and(|u| e.time_nanos > u) => return None,
                    Ok(e) if matches(&filters, &e) => {
                        return Some((
                            Ok::<Bytes, std::convert::Infallible>(line(&e)),
                            (rx, Some(deadline), filters),
                        ))
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let body = Body::from_stream(futures::StreamExt::chain(futures::stream::iter(past), live));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
