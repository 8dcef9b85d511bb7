//! Parses and validates a channel's creation parameters (JSON body or browser-only query) into
//! a `ChannelSpec`; every rejection names its field.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use crate::actors::history::MAX_HISTORY;
use crate::config::MAX_SAFE_INTEGER;
use crate::error::ApiError;
use crate::model::{ChannelSpec, Pattern};

/// The default inactivity timeout: one day.
pub const DEFAULT_TIMEOUT_MS: i64 = 86_400_000;

/// Parses a JSON request body; unknown fields (such as `auth`) are ignored.
pub fn from_body(body: &[u8]) -> Result<ChannelSpec, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(map) => from_map(&map),
        _ => Err(ApiError::InvalidJson(
            "expected an object like {\"pattern\": \"echo\"}".into(),
        )),
    }
}

/// Parses browser-only query parameters (`clientlimit`/`includesender` accepted in lower case).
pub fn from_query(query: &HashMap<String, String>) -> Result<ChannelSpec, ApiError> {
    let mut map = Map::new();
    for (key, canonical) in [
        ("pattern", "pattern"),
        ("clientLimit", "clientLimit"),
        ("clientlimit", "clientLimit"),
        ("timeout", "timeout"),
        ("includeSender", "includeSender"),
        ("includesender", "includeSender"),
        ("history", "history"),
    ] {
        let Some(raw) = query.get(key) else { continue };
        let value = match canonical {
            "pattern" => Value::String(raw.clone()),
            "includeSender" => match raw.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(raw.clone()),
            },
            _ => raw
                .parse::<i64>()
                .map(|n| Value::Number(Number::from(n)))
                .unwrap_or_else(|_| Value::String(raw.clone())),
        };
        map.insert(canonical.into(), value);
    }
    from_map(&map)
}

fn from_map(map: &Map<String, Value>) -> Result<ChannelSpec, ApiError> {
    let names: Vec<&str> = Pattern::ALL.iter().map(|p| p.as_str()).collect();
    let pattern = match map.get("pattern") {
        None => return Err(field(format!("\"pattern\" is required, one of {names:?}"))),
        Some(Value::String(s)) => s
            .parse::<Pattern>()
            .map_err(|_| field(format!("\"pattern\" must be one of {names:?}, got {s:?}")))?,
        Some(other) => return Err(field(format!("\"pattern\" must be a string, got {other}"))),
    };
    let client_limit = limit_or_minus_one(map, "clientLimit", -1)?;
    let timeout = limit_or_minus_one(map, "timeout", DEFAULT_TIMEOUT_MS)?;
    let include_sender = match map.get("includeSender") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(field(format!(
                "\"includeSender\" must be true or false, got {other}"
            )))
        }
    };
    if include_sender && pattern != Pattern::PubSub {
        return Err(field(format!(
            "\"includeSender\" is only allowed on pub-sub channels, not {pattern}"
        )));
    }
    let history = match map.get("history") {
        None => 0,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(MAX_HISTORY)) => {
            n.as_u64().map_or(0, |n| n as u32)
        }
        Some(other) => {
            return Err(field(format!(
                "\"history\" must be a whole number from 0 to {MAX_HISTORY}, got {other}"
            )))
        }
    };
    if history > 0 && pattern != Pattern::PubSub {
        return Err(field(format!(
            "\"history\" is only allowed on pub-sub channels, not {pattern}"
        )));
    }
    Ok(ChannelSpec {
        pattern,
        client_limit,
        timeout,
        include_sender,
        history,
    })
}

/// `-1` or an integer `0 ≤ n ≤ 2^53`; floats (even `5.0`), strings and null are refused.
fn limit_or_minus_one(map: &Map<String, Value>, name: &str, default: i64) -> Result<i64, ApiError> {
    let Some(value) = map.get(name) else {
        return Ok(default);
    };
    let n = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64(),
        _ => None,
    };
    match n {
        Some(n) if n == -1 || (0..=MAX_SAFE_INTEGER).contains(&n) => Ok(n),
        _ => Err(field(format!(
            "\"{name}\" must be -1 or a whole number from 0 to 2^53, got {value}"
        ))),
    }
}

fn field(message: String) -> ApiError {
    ApiError::InvalidField(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_body_gets_the_defaults() {
        let s = from_body(br#"{"pattern":"echo"}"#).unwrap();
        assert_eq!(s.pattern, Pattern::Echo);
        assert_eq!(
            (s.client_limit, s.timeout, s.include_sender),
            (-1, DEFAULT_TIMEOUT_MS, false)
        );
    }

    #[test]
    fn full_body_with_unknown_fields_is_accepted() {
        let s = from_body(
            br#"{"pattern":"pub-sub","clientLimit":3,"timeout":9007199254740992,"includeSender":true,"auth":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.client_limit, s.timeout, s.include_sender),
            (3, 1 << 53, true)
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            (r#"{"pattern":"nope"}"#, "pattern"),
            (r#"{}"#, "pattern"),
            (r#"{"pattern":5}"#, "pattern"),
            (r#"{"pattern":"echo","clientLimit":"3"}"#, "clientLimit"),
            (r#"{"pattern":"echo","clientLimit":1.5}"#, "clientLimit"),
            (r#"{"pattern":"echo","clientLimit":5.0}"#, "clientLimit"),
            (r#"{"pattern":"echo","clientLimit":-2}"#, "clientLimit"),
            (r#"{"pattern":"echo","clientLimit":null}"#, "clientLimit"),
            (
                r#"{"pattern":"echo","timeout":9007199254740993}"#,
                "timeout",
            ),
            (r#"{"pattern":"echo","timeout":1e3}"#, "timeout"),
            (
                r#"{"pattern":"echo","includeSender":"yes"}"#,
                "includeSender",
            ),
            (
                r#"{"pattern":"echo","includeSender":true}"#,
                "includeSender",
            ),
            (r#"{"pattern":"pub-sub","history":1001}"#, "history"),
            (r#"{"pattern":"pub-sub","history":-1}"#, "history"),
            (r#"{"pattern":"pub-sub","history":2.5}"#, "history"),
            (r#"{"pattern":"pub-sub","history":"5"}"#, "history"),
            (r#"{"pattern":"push-pull","history":5}"#, "history"),
        ];
        for (body, name) in cases {
            match from_body(body.as_bytes()) {
                Err(ApiError::InvalidField(msg)) => assert!(msg.contains(name), "{body}: {msg}"),
                other => panic!("{body}: expected invalid_field, got {other:?}"),
            }
        }
    }

    #[test]
    fn history_defaults_to_zero_and_is_allowed_on_pub_sub_up_to_1000() {
        assert_eq!(from_body(br#"{"pattern":"pub-sub"}"#).unwrap().history, 0);
        let s = from_body(br#"{"pattern":"pub-sub","history":1000}"#).unwrap();
        assert_eq!(s.history, 1000);
        // Zero is the default, so it is fine on any pattern.
        assert_eq!(
            from_body(br#"{"pattern":"echo","history":0}"#)
                .unwrap()
                .history,
            0
        );
    }

    #[test]
    fn non_objects_are_invalid_json() {
        for body in ["", "not json", "[1]", "\"echo\"", "null"] {
            assert!(
                matches!(from_body(body.as_bytes()), Err(ApiError::InvalidJson(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn query_values_parse_by_the_same_rules() {
        let q: HashMap<String, String> = [
            ("pattern", "push-pull"),
            ("clientlimit", "2"),
            ("timeout", "-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = from_query(&q).unwrap();
        assert_eq!(
            (s.pattern, s.client_limit, s.timeout),
            (Pattern::PushPull, 2, -1)
        );
        let bad: HashMap<String, String> = [("pattern", "echo"), ("timeout", "1.5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(matches!(from_query(&bad), Err(ApiError::InvalidField(_))));
    }
}
