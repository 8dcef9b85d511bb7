//! The req-repl / fan-in-out JSON envelope: parse `{"type": "request" | "reply", ...}`, stamp
//! the server-set `origin` on requests, and build `{"type": "error", ...}` frames.

use bytestring::ByteString;
use serde_json::{json, Map, Value};
use thiserror::Error;

/// A parsed subprotocol message, ready to route.
#[derive(Debug, PartialEq)]
pub enum Envelope {
    /// A request, re-serialised with `"origin"` set to the sender's id.
    Request(ByteString),
    /// A reply for the client `origin`; the original text passes through untouched.
    Reply { origin: String },
}

#[derive(Debug, Error, PartialEq, Clone, Copy)]
pub enum EnvelopeError {
    #[error("the message is not a JSON object")]
    InvalidJson,
    #[error("\"type\" must be \"request\" or \"reply\"")]
    InvalidType,
    #[error("a reply needs \"origin\": the id of the client that sent the request")]
    MissingOrigin,
    #[error("the reply's origin is not connected to this channel")]
    UnknownOrigin,
    #[error("binary frames are not supported on this channel's JSON subprotocol")]
    BinaryUnsupported,
}

impl EnvelopeError {
    pub fn code(self) -> &'static str {
        match self {
            EnvelopeError::InvalidJson => "invalid_json",
            EnvelopeError::InvalidType => "invalid_type",
            EnvelopeError::MissingOrigin => "missing_origin",
            EnvelopeError::UnknownOrigin => "unknown_origin",
            EnvelopeError::BinaryUnsupported => "binary_unsupported",
        }
    }

    /// The text frame sent back to the client whose message caused this error.
    pub fn frame(self) -> ByteString {
        json!({"type": "error", "error": self.code(), "message": self.to_string()})
            .to_string()
            .into()
    }
}

/// Parses one text message from `sender`.
pub fn parse(text: &str, sender: &str) -> Result<Envelope, EnvelopeError> {
    let mut obj: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| EnvelopeError::InvalidJson)?;
    match obj.get("type").and_then(Value::as_str) {
        Some("request") => {
            obj.insert("origin".into(), Value::String(sender.to_owned()));
            Ok(Envelope::Request(Value::Object(obj).to_string().into()))
        }
        Some("reply") => match obj.remove("origin") {
            Some(Value::String(origin)) => Ok(Envelope::Reply { origin }),
            _ => Err(EnvelopeError::MissingOrigin),
        },
        _ => Err(EnvelopeError::InvalidType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_gets_the_server_set_origin_and_keeps_other_fields() {
        let Envelope::Request(text) = parse(
            r#"{"type":"request","origin":"forged","n":1,"x":{"y":[1,2]}}"#,
            "me",
        )
        .unwrap() else {
            panic!("not a request")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["origin"], "me");
        assert_eq!(v["n"], 1);
        assert_eq!(v["x"]["y"][1], 2);
        assert_eq!(v["type"], "request");
    }

    #[test]
    fn reply_names_its_origin() {
        assert_eq!(
            parse(r#"{"type":"reply","origin":"abc","data":5}"#, "me"),
            Ok(Envelope::Reply {
                origin: "abc".into()
            })
        );
    }

    #[test]
    fn bad_envelopes_get_their_error_code() {
        let cases = [
            ("not json", EnvelopeError::InvalidJson),
            ("[1,2]", EnvelopeError::InvalidJson),
            ("\"request\"", EnvelopeError::InvalidJson),
            (r#"{"data":1}"#, EnvelopeError::InvalidType),
            (r#"{"type":"ping"}"#, EnvelopeError::InvalidType),
            (r#"{"type":5}"#, EnvelopeError::InvalidType),
            (r#"{"type":"reply"}"#, EnvelopeError::MissingOrigin),
            (
                r#"{"type":"reply","origin":7}"#,
                EnvelopeError::MissingOrigin,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input, "me"), Err(want), "{input}");
        }
    }

    #[test]
    fn error_frame_is_a_typed_json_object() {
        let v: Value = serde_json::from_str(&EnvelopeError::UnknownOrigin.frame()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"], "unknown_origin");
        assert!(v["message"].as_str().is_some());
    }
}
