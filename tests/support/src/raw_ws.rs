//! Raw sockets for peers that misbehave on purpose: a hand-made upgrade (`raw_upgrade`) and
//! a frame-level WebSocket client (`RawWs`) that can send what a real client never would.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

impl Server {
    /// A raw WebSocket upgrade over plain TCP (no TLS): see [`raw_upgrade`].
    pub async fn raw_upgrade(&self, path: &str) -> RawUpgrade {
        raw_upgrade(self.api_port, path, None).await
    }
}

/// Result of a raw HTTP upgrade attempt.
pub struct RawUpgrade {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// The socket when the upgrade succeeded (101).
    pub stream: Option<TcpStream>,
}

impl RawUpgrade {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "refused upgrade body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "upgrade: expected {status} {code}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_json_error("upgrade", &v);
        assert_eq!(v["error"].as_str(), Some(code), "upgrade error body: {v}");
    }

    pub fn into_raw(self) -> RawWs {
        RawWs {
            stream: self.stream.expect("upgrade succeeded"),
            buf: self.body,
        }
    }
}

/// Plain-TCP WebSocket handshake to 127.0.0.1:`port` `path`; reads the response head and, for
/// a refusal, its body. `recv_buffer` shrinks the socket's receive buffer (slow readers).
pub async fn raw_upgrade(port: u16, path: &str, recv_buffer: Option<u32>) -> RawUpgrade {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut stream = sock.connect(addr).await.expect("connect to wrs");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write upgrade");
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("upgrade response head timed out")
            .expect("read upgrade response");
        assert!(n > 0, "connection closed before the response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut body = buf[head_end..].to_vec();
    if status == 101 {
        return RawUpgrade {
            status,
            head,
            body,
            stream: Some(stream),
        };
    }
    let content_length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    });
    loop {
        if let Some(n) = content_length {
            if body.len() >= n {
                body.truncate(n);
                break;
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
        }
    }
    RawUpgrade {
        status,
        head,
        body,
        stream: None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A hand-rolled WebSocket client over TCP, for peers that misbehave on purpose.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Send one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.try_send_frame(fin, opcode, payload)
            .await
            .expect("raw send");
    }

    /// Send one masked frame; the error if the server closed or reset the connection.
    pub async fn try_send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(if fin { 0x80 } else { 0 } | opcode);
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await
    }

    /// Read one frame (opcode, payload) within `limit`; None on timeout or EOF.
    pub async fn read_frame(&mut self, limit: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some((op, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((op, payload));
            }
            let mut chunk = vec![0u8; 65536];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read frames until a close frame (returns its code) or EOF/timeout (None).
    pub async fn read_until_close(&mut self, limit: Duration) -> Option<Option<u16>> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (op, payload) = self.read_frame(left).await?;
            if op == 0x8 {
                return Some(if payload.len() >= 2 {
                    Some(u16::from_be_bytes([payload[0], payload[1]]))
                } else {
                    None
                });
            }
        }
    }
}

fn parse_frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let op = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let mut len = (b[1] & 0x7f) as usize;
    let mut pos = 2;
    if len == 126 {
        if b.len() < 4 {
            return None;
        }
        len = u16::from_be_bytes([b[2], b[3]]) as usize;
        pos = 4;
    } else if len == 127 {
        if b.len() < 10 {
            return None;
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[2..10]);
        len = u64::from_be_bytes(a) as usize;
        pos = 10;
    }
    let mask = if masked {
        if b.len() < pos + 4 {
            return None;
        }
        let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    if b.len() < pos + len {
        return None;
    }
    let mut payload = b[pos..pos + len].to_vec();
    if let Some(m) = mask {
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= m[i % 4];
        }
    }
    Some((op, payload, pos + len))
}
