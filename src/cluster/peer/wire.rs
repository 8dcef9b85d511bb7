//! What travels between nodes, and its one codec. A peer link carries `Frame`s, each one
//! WebSocket binary message encoded with bincode (serde); raft-rs messages inside are its own
//! protobuf encoding. Request/response routes carry the typed JSON bodies below.
//!
//! Decoding is bounded: bincode is given `MAX_FRAME` as its limit, so a declared length can
//! never make it allocate more than the frame that actually arrived could hold.

use bincode::Options;
use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;
use serde::{Deserialize, Serialize};

/// The largest frame a link accepts (a Raft snapshot of every channel must fit).
pub const MAX_FRAME: usize = 64 << 20;

/// One message on a peer link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Raft messages for the receiving node, each in raft-rs' protobuf encoding.
    Raft(Vec<Bytes>),
    /// A proxy's client sent a message; the owner sequences it.
    Publish {
        channel: String,
        from: String,
        text: bool,
        payload: Bytes,
    },
    /// A proxy's client went away.
    Leave { channel: String, client: String },
    /// One encoded WebSocket frame for some of the receiving node's clients.
    Deliver {
        channel: String,
        to: Vec<String>,
        frame: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unreadable frame: {0}")]
    Frame(#[from] bincode::Error),
    #[error("unreadable raft message: {0}")]
    Raft(#[from] protobuf::ProtobufError),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_FRAME as u64)
}

impl Frame {
    pub fn raft(msgs: &[RaftMessage]) -> Frame {
        Frame::Raft(
            msgs.iter()
                .filter_map(|m| m.write_to_bytes().ok().map(Bytes::from))
                .collect(),
        )
    }

    pub fn encode(&self) -> Bytes {
        // Serializing owned data into a Vec cannot fail short of the size limit, which only
        // an oversized snapshot reaches; it is then dropped like a lost message.
        options()
            .serialize(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
        Ok(options().deserialize(bytes)?)
    }
}

/// Decodes the Raft messages of a `Frame::Raft`.
pub fn raft_messages(parts: &[Bytes]) -> Result<Vec<RaftMessage>, WireError> {
    parts
        .iter()
        .map(|p| Ok(RaftMessage::parse_from_bytes(p)?))
        .collect()
}

/// `POST /relay/join`: a proxy node asks the owner to admit one of its clients. The owner
/// replays `history` stored messages to it as `Deliver` records on its relay link, ahead of
/// the live ones. (Both added later: a node that sends neither means 0.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinChannel {
    pub channel: String,
    pub client: String,
    pub node: u64,
    /// When the client connected to its node, ms since the Unix epoch.
    #[serde(default)]
    pub connected_at_ms: u64,
    #[serde(default)]
    pub history: usize,
}

/// `POST /relay/publish`: a server-side publish that reached a node other than the owner.
/// Sent as bincode (the `Frame` codec), not JSON: the payload may be binary and as large as
/// `WRS_MAX_MESSAGE_SIZE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub channel: String,
    pub text: bool,
    pub payload: Bytes,
}

impl PublishRequest {
    pub fn encode(&self) -> Bytes {
        options()
            .serialize(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<PublishRequest, WireError> {
        Ok(options().deserialize(bytes)?)
    }
}

/// The owner's answer to `POST /relay/publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub delivered: u64,
}

/// `POST /relay/clients`: presence, asked of the channel's owner; the answer is a JSON list of
/// `model::Present`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientsQuery {
    pub channel: String,
}

/// `POST /relay/live`: the channels whose live numbers the asking node wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveQuery {
    pub channels: Vec<String>,
}

/// Every peer answer that is not a success: `{"message", "error"}` plus what the caller
/// needs to act on it (the client limit that was reached, the leader to ask instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let m = RaftMessage {
            to: 3,
            term: 9,
            ..Default::default()
        };
        let frames = [
            Frame::raft(&[m.clone(), m]),
            Frame::Publish {
                channel: "c".into(),
                from: "a".into(),
                text: true,
                payload: Bytes::from_static("héllo".as_bytes()),
            },
            Frame::Leave {
                channel: "c".into(),
                client: "b".into(),
            },
            Frame::Deliver {
                channel: "c".into(),
                to: (0..70_000).map(|i| i.to_string()).collect(),
                frame: Bytes::from_static(b"\x81\x01a"),
            },
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        let Frame::Raft(parts) = Frame::raft(&[RaftMessage::default()]) else {
            unreachable!()
        };
        assert_eq!(raft_messages(&parts).unwrap().len(), 1);
    }

    #[test]
    fn publish_requests_round_trip_and_old_joins_still_decode() {
        let p = PublishRequest {
            channel: "c".into(),
            text: false,
            payload: Bytes::from_static(&[0, 159, 255]),
        };
        assert_eq!(PublishRequest::decode(&p.encode()).unwrap(), p);
        assert!(PublishRequest::decode(b"\x05").is_err());
        let old: JoinChannel =
            serde_json::from_str(r#"{"channel":"c","client":"a","node":2}"#).unwrap();
        assert_eq!((old.connected_at_ms, old.history), (0, 0));
    }

    #[test]
    fn garbage_and_huge_declared_lengths_are_refused_without_allocating() {
        assert!(Frame::decode(b"").is_err());
        assert!(Frame::decode(&[9, 0, 0, 0]).is_err());
        // A Deliver claiming 2^60 recipients in a few bytes.
        let mut huge = vec![3u8];
        huge.extend_from_slice(&[1, b'c', 0xfc]);
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(Frame::decode(&huge).is_err());
        assert!(raft_messages(&[Bytes::from_static(b"\xff\xff\xff")]).is_err());
    }
}
