//! Shared harness for the wrs integration tests: starts the real `wrs` binary on free
//! loopback ports, talks REST to it with awc, and drives WebSocket clients (awc's and a raw
//! TCP one for misbehaving peers).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous default for waiting on something the server should do "right away".
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a negative check ("nothing arrives") listens.
pub const QUIET: Duration = Duration::from_millis(400);
/// Largest frame/message our clients accept.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A port that was free a moment ago (bind to :0 and drop).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// An awc client; `tls` makes it accept any certificate (our test certs are self-signed).
pub fn http_client(tls: bool) -> awc::Client {
    let mut connector = awc::Connector::new()
        .timeout(Duration::from_secs(5))
        .max_http_version(awc::http::Version::HTTP_11);
    if tls {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .expect("ssl connector builder");
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let _ = b.set_alpn_protos(b"\x08http/1.1");
        connector = connector.openssl(b.build());
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(15))
        .disable_redirects()
        .finish()
}

/// A running `wrs` process; killed on drop (its log is printed when the test panicked).
pub struct Server {
    child: Option<Child>,
    pub api_port: u16,
    pub node_port: u16,
    pub tls: bool,
    dir: tempfile::TempDir,
    client: awc::Client,
}

/// Environment every test server gets unless the test overrides it.
fn base_env(api_port: u16, node_port: u16) -> Vec<(String, String)> {
    vec![
        ("WRS_BIND".into(), "127.0.0.1".into()),
        ("WRS_API_PORT".into(), api_port.to_string()),
        ("WRS_NODE_PORT".into(), node_port.to_string()),
        ("WRS_DOMAIN".into(), "127.0.0.1".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// Spawn the binary with `envs` (after the base env) and stdout/stderr into files in `dir`.
pub fn spawn_wrs(dir: &Path, envs: &[(String, String)]) -> Child {
    let out = File::create(dir.join("stdout.log")).expect("create stdout.log");
    let err = File::create(dir.join("stderr.log")).expect("create stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wrs"));
    // Do not leak the developer's configuration into the test server.
    for (k, _) in std::env::vars() {
        if k.starts_with("WRS_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    cmd.spawn().expect("spawn the wrs binary")
}

impl Server {
    /// Start a server with extra environment variables and wait until `/healthz` is 200.
    pub async fn start(envs: &[(&str, &str)]) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..4 {
            let api_port = free_port();
            let mut node_port = free_port();
            while node_port == api_port {
                node_port = free_port();
            }
            let mut all = base_env(api_port, node_port);
            for (k, v) in envs {
                all.retain(|(ek, _)| ek != k);
                all.push((k.to_string(), v.to_string()));
            }
            let tls = envs.iter().any(|(k, v)| *k == "WRS_SSL" && *v == "true");
            let dir = tempfile::tempdir().expect("tempdir");
            let child = spawn_wrs(dir.path(), &all);
            let mut server = Server {
                child: Some(child),
                api_port,
                node_port,
                tls,
                dir,
                client: http_client(tls),
            };
            match server.wait_healthy(Duration::from_secs(20)).await {
                Ok(()) => return server,
                Err(e) => {
                    last_log = format!("{e}\n{}", server.logs());
                    // A port taken between our probe and the server's bind: try new ports.
                    let lower = last_log.to_lowercase();
                    if lower.contains("in use") || lower.contains("addrinuse") {
                        continue;
                    }
                    break;
                }
            }
        }
        // Don't print the log twice through Drop.
        panic!("wrs did not become healthy:\n{last_log}");
    }

    async fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let url = self.url("/healthz");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = self.child.take();
                    return Err(format!("wrs exited before it was healthy: {status}"));
                }
            }
            if let Ok(Ok(res)) =
                tokio::time::timeout(Duration::from_secs(2), self.client.get(&url).send()).await
            {
                if res.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("GET /healthz was not 200 within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server process").id()
    }

    /// stdout + stderr of the server so far.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("--- wrs stdout ---\n{out}\n--- wrs stderr ---\n{err}")
    }

    /// Send SIGTERM to the server process.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait (polling) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("server process");
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.api_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// Any request; `body` is sent as is (no content type unless given in `headers`).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let m = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, self.url(path));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Some(b) => req.send_body(b).await,
            None => req.send().await,
        };
        let mut res = sent.unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let body = res
            .body()
            .limit(MAX_FRAME)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading body failed: {e}"))
            .to_vec();
        Resp {
            what: format!("{method} {path}"),
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_vec()),
        )
        .await
    }

    /// POST /channels with `body`; asserts 201 and returns the channel.
    pub async fn create(&self, body: Value) -> Created {
        let res = self.post_json("/channels", &body).await;
        Created::from_response(res)
    }

    /// Create a channel with the given pattern and defaults; returns (id, token).
    pub async fn create_channel(&self, pattern: &str) -> (String, String) {
        let c = self.create(json!({ "pattern": pattern })).await;
        (c.id, c.token)
    }

    /// GET /channels/{id} -> data (asserts 200).
    pub async fn channel(&self, id: &str) -> Value {
        let res = self.get(&format!("/channels/{id}")).await;
        assert_eq!(res.status, 200, "GET /channels/{id}: {}", res.text());
        res.json()["data"].clone()
    }

    /// The `clients` count of a channel.
    pub async fn clients(&self, id: &str) -> i64 {
        self.channel(id).await["clients"]
            .as_i64()
            .expect("clients is an integer")
    }

    /// Poll GET /channels/{id} until `clients == n`.
    pub async fn wait_clients(&self, id: &str, n: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.clients(id).await;
            if c == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "channel {id}: clients stayed {c}, expected {n} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn connect_path(id: &str, token: &str) -> String {
        format!("/channels/{id}/connect?token={token}")
    }

    /// Open a WebSocket to `path` (with query); Err carries the failure text.
    pub async fn try_ws(&self, path: &str) -> Result<Ws, String> {
        let fut = self
            .client
            .ws(self.ws_url(path))
            .max_frame_size(MAX_FRAME)
            .connect();
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
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

    /// A raw WebSocket upgrade over plain TCP (no TLS): see [`raw_upgrade`].
    pub async fn raw_upgrade(&self, path: &str) -> RawUpgrade {
        raw_upgrade(self.api_port, path, None).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: String = if logs.len() > 8000 {
                let mut start = logs.len() - 8000;
                while !logs.is_char_boundary(start) {
                    start += 1;
                }
                logs[start..].to_string()
            } else {
                logs
            };
            eprintln!("{tail}");
        }
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Resp {
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}); status {}, body {:?}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }

    /// Assert an error response: `status`, JSON `{"message": non-empty string, "error": code}`.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}: expected status {status} ({code}), got {} with body {:?}",
            self.what,
            self.status,
            self.text()
        );
        let v = self.json();
        assert_json_error(&self.what, &v);
        assert_eq!(
            v["error"].as_str(),
            Some(code),
            "{}: expected error code {code:?}, body {v}",
            self.what
        );
        v
    }
}

/// `v` is `{"message": "<non-empty>", "error": "<non-empty>"}`.
pub fn assert_json_error(what: &str, v: &Value) {
    assert!(
        v["message"].as_str().is_some_and(|s| !s.trim().is_empty()),
        "{what}: error body needs a non-empty string \"message\": {v}"
    );
    assert!(
        v["error"].as_str().is_some_and(|s| !s.trim().is_empty()),
        "{what}: error body needs a non-empty string \"error\": {v}"
    );
}

/// A created channel.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub token: String,
    pub body: Value,
    pub location: Option<String>,
}

impl Created {
    pub fn from_response(res: Resp) -> Created {
        assert_eq!(
            res.status,
            201,
            "{}: expected 201, got body {:?}",
            res.what,
            res.text()
        );
        let body = res.json();
        let id = body["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("create response without data.id: {body}"))
            .to_string();
        let token = body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("create response without token: {body}"))
            .to_string();
        Created {
            id,
            token,
            location: res.header("location"),
            body,
        }
    }

    pub fn connect_path(&self) -> String {
        Server::connect_path(&self.id, &self.token)
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
        self.stream.write_all(&f).await.expect("raw send");
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

/// A self-signed certificate for CN=localhost / IP 127.0.0.1, written as PEM files into
/// `dir`; returns (cert path, key path).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    let rsa = Rsa::generate(2048).expect("rsa key");
    let key = PKey::from_rsa(rsa).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "localhost").expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("x509 builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial asn1"))
        .expect("set serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("later"))
        .expect("not after");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .expect("san");
    b.append_extension(san).expect("append san");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.to_pem().expect("cert pem")).expect("write cert");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("key pem")).expect("write key");
    (cert_path, key_path)
}
