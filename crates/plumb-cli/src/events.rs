//! `plumb events`: plumbd's event stream, printed like `docker events`.

use crate::client::Client;
use anyhow::bail;
use clap::Args;
use serde_json::{Map, Value};

/// `events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter key=value (type, event, network, container, scope, label; repeatable).
    #[arg(long, short)]
    filter: Vec<String>,
    /// Show events since this time (Unix seconds, RFC 3339 or a duration like 10m).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time.
    #[arg(long)]
    until: Option<String>,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    format: String,
}

fn query_escape(s: &str) -> String {
    crate::client::seg(s)
}

/// Streams events until plumbd ends the stream (`--until`) or the user stops it.
pub async fn run(c: &Client, a: EventsArgs) -> anyhow::Result<()> {
    let mut filters: Map<String, Value> = Map::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid --filter {f:?}: expected key=value");
        };
        let entry = filters
            .entry(k.to_owned())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = entry {
            list.push(Value::String(v.to_owned()));
        }
    }
    let mut q = Vec::new();
    if !filters.is_empty() {
        q.push(format!(
            "filters={}",
            query_escape(&Value::Object(filters).to_string())
        ));
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", query_escape(s)));
    }
    if let Some(u) = &a.until {
        q.push(format!("until={}", query_escape(u)));
    }
    let path = if q.is_empty() {
        "/events".to_owned()
    } else {
        format!("/events?{}", q.join("&"))
    };
    let json = a.format == "json";
    c.stream_lines(&path, |line| {
        if json {
            println!("{line}");
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let attrs: Vec<String> = v["Actor"]["Attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let nanos = v["timeNano"].as_u64().unwrap_or(0);
        println!(
            "{} {} {} {} ({})",
            plumb_core::events::rfc3339_nanos(u128::from(nanos)),
            v["Type"].as_str().unwrap_or_default(),
            v["Action"].as_str().unwrap_or_default(),
            v["Actor"]["ID"].as_str().unwrap_or_default(),
            attrs.join(", ")
        );
    })
    .await
}
