//! Docker's `filters` query parameter: JSON `{"key": ["v", ...]}` (or the legacy
//! `{"key": {"v": true}}`), values of one key OR-ed, keys AND-ed.

use crate::error::ApiError;
use plumb_core::model::Network;
use plumb_core::NetworkView;
use serde_json::Value;
use std::collections::BTreeMap;

/// Parsed filters.
#[derive(Debug, Default, Clone)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the `filters` parameter, accepting only `allowed` keys.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad_request(format!(
                "invalid filters {raw:?}: expected a JSON object"
            )));
        };
        let mut out = BTreeMap::new();
        for (k, v) in m {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
            let vals: Vec<String> = match v {
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, b)| b.as_bool().unwrap_or(false))
                    .map(|(s, _)| s)
                    .collect(),
                Value::String(s) => vec![s],
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter '{k}': expected a list of strings"
                    )))
                }
            };
            out.insert(k, vals);
        }
        Ok(Filters(out))
    }

    /// The values of `key`, if the filter is set.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice).filter(|v| !v.is_empty())
    }
}

/// True when the labels satisfy every `label` value (`k` or `k=v`).
pub fn labels_match(labels: &BTreeMap<String, String>, wanted: &[String]) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(w),
    })
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter '{key}={v}': expected true or false"
        ))),
    }
}

/// Keys `GET /networks` accepts.
pub const NETWORK_KEYS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// True when a network passes the `GET /networks` filters.
pub fn network_matches(f: &Filters, v: &NetworkView) -> Result<bool, ApiError> {
    let n: &Network = &v.network;
    if let Some(vals) = f.get("driver") {
        if !vals.contains(&n.spec.driver) {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("id") {
        if !vals.iter().any(|p| n.id.as_str().starts_with(p.as_str())) {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("name") {
        if !vals.iter().any(|p| n.spec.name.contains(p.as_str())) {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("label") {
        if !labels_match(&n.spec.labels, vals) {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("scope") {
        for s in vals {
            if !["local", "global", "swarm"].contains(&s.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter 'scope={s}'")));
            }
        }
        if !vals.iter().any(|s| s == n.spec.scope.as_str()) {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("type") {
        let mut ok = false;
        for t in vals {
            ok |= match t.as_str() {
                "custom" => !n.predefined,
                "builtin" => n.predefined,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter: 'type'='{t}'"
                    )))
                }
            };
        }
        if !ok {
            return Ok(false);
        }
    }
    if let Some(vals) = f.get("dangling") {
        for d in vals {
            let want = parse_bool("dangling", d)?;
            let dangling = !n.predefined && v.endpoints.is_empty();
            if want != dangling {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Parses a Docker timestamp: Unix seconds (with optional fraction), RFC 3339, or a duration
/// before `now` such as `10m` or `1h30m`. Returns nanoseconds since the Unix epoch.
pub fn parse_time(v: &str, now_nanos: u128) -> Result<u128, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid timestamp or duration {v:?}"));
    if let Some(d) = parse_duration(v) {
        return Ok(now_nanos.saturating_sub(d));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs < 0.0 {
            return Err(bad());
        }
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        let s: u128 = int.parse().map_err(|_| bad())?;
        let mut frac = frac.to_owned();
        frac.truncate(9);
        while frac.len() < 9 {
            frac.push('0');
        }
        let ns: u128 = frac.parse().map_err(|_| bad())?;
        return Ok(s * 1_000_000_000 + ns);
    }
    parse_rfc3339(v).ok_or_else(bad)
}

fn parse_duration(v: &str) -> Option<u128> {
    let mut total: u128 = 0;
    let mut num = String::new();
    let mut any = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit: u128 = match c {
            'h' => 3_600_000_000_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1_000_000
            }
            'm' => 60_000_000_000,
            's' => 1_000_000_000,
            _ => return None,
        };
        let n: f64 = num.parse().ok()?;
        total += (n * unit as f64) as u128;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

fn parse_rfc3339(v: &str) -> Option<u128> {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
    let b = v.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (y, mo, d) = (num(v.get(0..4)?)?, num(v.get(5..7)?)?, num(v.get(8..10)?)?);
    let (h, mi, s) = (
        num(v.get(11..13)?)?,
        num(v.get(14..16)?)?,
        num(v.get(17..19)?)?,
    );
    let mut rest = v.get(19..)?;
    let mut nanos: i64 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        let mut frac = r[..end].to_owned();
        frac.truncate(9);
        while frac.len() < 9 {
            frac.push('0');
        }
        nanos = num(&frac)?;
        rest = &r[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(&o[1..3])? * 3600 + num(&o[4..6])? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    (secs >= 0).then(|| secs as u128 * 1_000_000_000 + nanos as u128)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filter_encodings() {
        let f = Filters::parse(
            Some(r#"{"label":["a=b"],"driver":{"bridge":true}}"#),
            NETWORK_KEYS,
        )
        .unwrap();
        assert_eq!(f.get("label").unwrap(), ["a=b"]);
        assert_eq!(f.get("driver").unwrap(), ["bridge"]);
        assert!(Filters::parse(Some(r#"{"bogus":["x"]}"#), NETWORK_KEYS).is_err());
        assert!(Filters::parse(Some("not json"), NETWORK_KEYS).is_err());
    }

    #[test]
    fn times() {
        let now = 1_700_000_000_000_000_000u128;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000_000_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000_000_000);
        assert_eq!(
            parse_time("1700000000.5", now).unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00", now).unwrap(),
            1_700_000_000_250_000_000
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn labels() {
        let mut l = BTreeMap::new();
        l.insert("a".to_owned(), "b".to_owned());
        assert!(labels_match(&l, &["a".into()]));
        assert!(labels_match(&l, &["a=b".into()]));
        assert!(!labels_match(&l, &["a=c".into()]));
        assert!(!labels_match(&l, &["z".into()]));
    }
}
