//! WebSocket clients over awc: connect by path or full URL (with an `Origin`), `Ws` that
//! answers pings and reassembles fragments, `Msg` for what it saw.

use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use crate::*;

impl Server {
    pub fn connect_path(id: &str, token: &str) -> String {
        format!("/channels/{id}/connect?token={token}")
    }

    /// Open a WebSocket to `path` (with query); Err carries the failure text.
    pub async fn try_ws(&self, path: &str) -> Result<Ws, String> {
        self.try_ws_url(&self.ws_url(path), None).await
    }

    /// Open a WebSocket to a full `ws://`/`wss://` URL, optionally sending an `Origin` header
    /// as a browser does.
    pub async fn try_ws_url(&self, url: &str, origin: Option<&str>) -> Result<Ws, String> {
        ws_with(&self.client, url, origin, Duration::from_secs(10)).await
    }

    pub async fn ws(&self, path: &str) -> Ws {
        self.try_ws(path)
            .await
            .unwrap_or_else(|e| panic!("websocket to {path} failed: {e}"))
    }

    /// Connect a WebSocket client to channel `id` with `token`.
    pub async fn connect(&self, id: &str, token: &str) -> Ws {
        self.ws(&Self::connect_path(id, token)).await
    }

    /// Connect `n` clients and wait until the server counts them all.
    pub async fn connect_n(&self, id: &str, token: &str, n: usize) -> Vec<Ws> {
        let before = self.clients(id).await;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.connect(id, token).await);
        }
        self.wait_clients(id, before + n as i64, WAIT).await;
        v
    }
}

/// Opens a WebSocket through `client` to a full URL within `limit`, optionally with an
/// `Origin`; for load generators that address nodes by port, not by `Server`.
pub async fn ws_with(
    client: &awc::Client,
    url: &str,
    origin: Option<&str>,
    limit: Duration,
) -> Result<Ws, String> {
    let mut req = client.ws(url).max_frame_size(MAX_FRAME);
    if let Some(origin) = origin {
        req = req.origin(origin);
    }
    match tokio::time::timeout(limit, req.connect()).await {
        Err(_) => Err("websocket connect timed out".into()),
        Ok(Err(e)) => Err(format!("{e}")),
        Ok(Ok((res, io))) => {
            if res.status().as_u16() != 101 {
                return Err(format!("status {}", res.status()));
            }
            Ok(Ws::new(io))
        }
    }
}

/// One thing a WebSocket client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: code (None when the frame had no code) and reason.
    Close(Option<u16>, String),
    /// The stream ended or broke without a close frame.
    Gone(String),
}

/// An awc WebSocket client that answers pings (unless `auto_pong` is off) and reassembles
/// fragmented messages.
pub struct Ws {
    io: Framed<BoxedSocket, Codec>,
    pub auto_pong: bool,
    pub pings: usize,
    partial: Option<(bool, Vec<u8>)>,
    closed: bool,
}

impl Ws {
    pub fn new(io: Framed<BoxedSocket, Codec>) -> Ws {
        Ws {
            io,
            auto_pong: true,
            pings: 0,
            partial: None,
            closed: false,
        }
    }

    pub async fn send(&mut self, m: Message) {
        self.io
            .send(m)
            .await
            .unwrap_or_else(|e| panic!("websocket send failed: {e}"));
    }

    pub async fn try_send(&mut self, m: Message) -> Result<(), String> {
        self.io.send(m).await.map_err(|e| format!("{e}"))
    }

    pub async fn send_text(&mut self, s: &str) {
        self.send(Message::Text(s.to_string().into())).await
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        self.send(Message::Binary(Bytes::copy_from_slice(b))).await
    }

    pub async fn close(&mut self, code: u16) {
        let _ = self
            .io
            .send(Message::Close(Some(CloseReason {
                code: CloseCode::from(code),
                description: None,
            })))
            .await;
    }

    /// Next message or close within `limit`; None on timeout.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Msg> {
        if self.closed {
            return Some(Msg::Gone("already closed".into()));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.io.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.closed = true;
                    return Some(Msg::Gone("stream ended".into()));
                }
                Ok(Some(Err(e))) => {
                    self.closed = true;
                    return Some(Msg::Gone(format!("protocol error: {e}")));
                }
                Ok(Some(Ok(f))) => f,
            };
            match frame {
                Frame::Text(b) => {
                    return Some(Msg::Text(
                        String::from_utf8(b.to_vec()).expect("text frame is UTF-8"),
                    ))
                }
                Frame::Binary(b) => return Some(Msg::Binary(b.to_vec())),
                Frame::Continuation(item) => match item {
                    actix_http::ws::Item::FirstText(b) => self.partial = Some((true, b.to_vec())),
                    actix_http::ws::Item::FirstBinary(b) => {
                        self.partial = Some((false, b.to_vec()))
                    }
                    actix_http::ws::Item::Continue(b) => {
                        if let Some((_, buf)) = self.partial.as_mut() {
                            buf.extend_from_slice(&b);
                        }
                    }
                    actix_http::ws::Item::Last(b) => {
                        if let Some((text, mut buf)) = self.partial.take() {
                            buf.extend_from_slice(&b);
                            return Some(if text {
                                Msg::Text(String::from_utf8(buf).expect("text is UTF-8"))
                            } else {
                                Msg::Binary(buf)
                            });
                        }
                    }
                },
                Frame::Ping(p) => {
                    self.pings += 1;
                    if self.auto_pong {
                        let _ = self.io.send(Message::Pong(p)).await;
                    }
                }
                Frame::Pong(_) => {}
                Frame::Close(reason) => {
                    self.closed = true;
                    // Answer the close handshake.
                    let _ = self.io.send(Message::Close(reason.clone())).await;
                    return Some(match reason {
                        Some(r) => {
                            Msg::Close(Some(u16::from(r.code)), r.description.unwrap_or_default())
                        }
                        None => Msg::Close(None, String::new()),
                    });
                }
            }
        }
    }

    /// The next data message; panics on timeout or close.
    pub async fn recv(&mut self) -> Msg {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Msg {
        match self.next_event(limit).await {
            None => panic!("no message within {limit:?}"),
            Some(m @ (Msg::Text(_) | Msg::Binary(_))) => m,
            Some(other) => panic!("expected a message, got {other:?}"),
        }
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Msg::Text(s) => s,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Msg::Binary(b) => b,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        let s = self.recv_text().await;
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("message is not JSON ({e}): {s}"))
    }

    /// Assert that no data message arrives within `limit` (a close is also a failure).
    pub async fn expect_silence(&mut self, limit: Duration) {
        if let Some(m) = self.next_event(limit).await {
            panic!("expected no message within {limit:?}, got {m:?}");
        }
    }

    /// Wait for a close frame with `code` (data messages before it are skipped); returns the
    /// reason text.
    pub async fn expect_close(&mut self, code: u16, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                None => panic!("no close frame {code} within {limit:?}"),
                Some(Msg::Close(c, reason)) => {
                    assert_eq!(
                        c,
                        Some(code),
                        "expected close code {code}, got {c:?} (reason {reason:?})"
                    );
                    return reason;
                }
                Some(Msg::Gone(why)) => {
                    panic!("expected close code {code}, the connection ended without one: {why}")
                }
                Some(_) => continue,
            }
        }
    }
}
