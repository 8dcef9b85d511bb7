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
        self.try_ws_url(&self.ws_url(path), None).await
    }

    /// Open a WebSocket to a full `ws://`/`wss://` URL, optionally sending an `Origin` header
    /// as a browser does.
    pub async fn try_ws_url(&self, url: &str, origin: Option<&str>) -> Result<Ws, String> {
        let mut req = self.client.ws(url).max_frame_size(MAX_FRAME);
        if let Some(origin) = origin {
            req = req.origin(origin);
        }
        let fut = req.connect();
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

// ---------------------------------------------------------------------------------------------
// Cluster helpers (tests/cluster.rs, tests/cluster_relay.rs): several `wrs` processes on
// loopback ports that find each other through `WRS_JOIN`.

/// The shared secret of every test cluster.
pub const CLUSTER_SECRET: &str = "wrs-test-cluster-secret-0123456789";
/// How long a test waits for a cluster to form, converge or fail over.
pub const FORM: Duration = Duration::from_secs(20);

/// Raft timing for test clusters: heartbeat 200 ms, elections after 800–1200 ms (100 ms ticks).
pub const FAST_RAFT: &[(&str, &str)] = &[
    ("WRS_NODE_HEARTBEAT", "200"),
    ("WRS_NODE_MIN_ELECTION_TIMEOUT", "800"),
    ("WRS_NODE_MAX_ELECTION_TIMEOUT", "1200"),
];

/// The environment of a cluster node: the secret and [`FAST_RAFT`], then `extra` (which wins).
pub fn cluster_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![("WRS_CLUSTER_SECRET".into(), CLUSTER_SECRET.into())];
    for (k, v) in FAST_RAFT.iter().chain(extra.iter()) {
        all.retain(|(ek, _)| ek != k);
        all.push((k.to_string(), v.to_string()));
    }
    all
}

/// `n` distinct ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut v: Vec<u16> = Vec::with_capacity(n);
    while v.len() < n {
        let p = free_port();
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// Whether a server log says a port could not be bound.
fn port_taken(log: &str) -> bool {
    let lower = log.to_lowercase();
    lower.contains("in use") || lower.contains("addrinuse")
}

impl Server {
    /// Spawn the binary on the given ports with `envs` (after the base env) and return at once,
    /// without waiting for `/healthz` (see [`Server::wait_up`]).
    pub fn spawn_on(api_port: u16, node_port: u16, envs: &[(String, String)]) -> Server {
        let mut all = base_env(api_port, node_port);
        for (k, v) in envs {
            all.retain(|(ek, _)| ek != k);
            all.push((k.clone(), v.clone()));
        }
        let tls = envs.iter().any(|(k, v)| k == "WRS_SSL" && v == "true");
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_wrs(dir.path(), &all);
        Server {
            child: Some(child),
            api_port,
            node_port,
            tls,
            dir,
            client: http_client(tls),
        }
    }

    /// Wait until `/healthz` is 200; Err (with the reason, not the log) when the process exited
    /// or the time ran out.
    pub async fn wait_up(&mut self, limit: Duration) -> Result<(), String> {
        self.wait_healthy(limit).await
    }

    /// `127.0.0.1:<api port>`, the address the node advertises (WRS_DOMAIN=127.0.0.1).
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL the process and reap it (its log stays readable).
    pub fn kill_hard(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Any request that may fail (connection refused, timeout) without panicking.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        limit: Duration,
    ) -> Result<Resp, String> {
        let m = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self.client.request(m, self.url(path)).timeout(limit);
        let fut = async {
            let mut res = match body {
                Some(b) => req
                    .insert_header(("content-type", "application/json"))
                    .send_body(b.to_string())
                    .await
                    .map_err(|e| format!("{method} {path}: {e}"))?,
                None => req
                    .send()
                    .await
                    .map_err(|e| format!("{method} {path}: {e}"))?,
            };
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
                .map_err(|e| format!("{method} {path}: body: {e}"))?
                .to_vec();
            Ok(Resp {
                what: format!("{method} {path} on {}", self.address()),
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(limit + Duration::from_secs(1), fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("{method} {path}: no answer within {limit:?}")),
        }
    }

    /// `GET /cluster` → `data`, or None when the node does not answer (in time) or not with 200.
    pub async fn try_cluster_view(&self) -> Option<Value> {
        let res = self
            .try_request("GET", "/cluster", None, Duration::from_secs(3))
            .await
            .ok()?;
        if res.status != 200 {
            return None;
        }
        serde_json::from_slice::<Value>(&res.body)
            .ok()
            .map(|v| v["data"].clone())
    }

    /// `GET /cluster` → `data` (asserts 200).
    pub async fn cluster_view(&self) -> Value {
        let res = self.get("/cluster").await;
        assert_eq!(res.status, 200, "GET /cluster: {}", res.text());
        res.json()["data"].clone()
    }

    /// This node's Raft id, from its own `GET /cluster`.
    pub async fn node_id(&self) -> u64 {
        self.cluster_view().await["id"]
            .as_u64()
            .expect("GET /cluster: data.id is an integer")
    }

    /// The ids of the channels `GET /channels` lists (asserts 200).
    pub async fn channel_ids(&self) -> Vec<String> {
        let res = self.get("/channels").await;
        assert_eq!(res.status, 200, "GET /channels: {}", res.text());
        let mut ids: Vec<String> = res.json()["data"]
            .as_array()
            .expect("GET /channels: data is an array")
            .iter()
            .map(|c| c["id"].as_str().expect("channel id").to_string())
            .collect();
        ids.sort();
        ids
    }
}

/// The ids listed in a `GET /cluster` view, sorted.
pub fn view_ids(view: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = view["nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["id"].as_u64()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Ok when `views` (one per node in `servers`, same order) describe one cluster made of exactly
/// these nodes: every view lists the same members with the right addresses, names the same
/// leader, which is one of them and the only one with role "leader"; every node is listed under
/// its own id; with `settled`, no member is still a learner.
pub fn check_one_cluster(
    servers: &[&Server],
    views: &[Value],
    settled: bool,
) -> Result<(), String> {
    let n = servers.len();
    let own: Vec<u64> = views
        .iter()
        .map(|v| v["id"].as_u64().ok_or("a view without an id"))
        .collect::<Result<_, _>>()?;
    let mut own_sorted = own.clone();
    own_sorted.sort_unstable();
    own_sorted.dedup();
    if own_sorted.len() != n {
        return Err(format!("node ids are not distinct: {own:?}"));
    }
    let leader = views[0]["leader"].as_u64();
    for (i, (s, v)) in servers.iter().zip(views).enumerate() {
        if v["address"].as_str() != Some(s.address().as_str()) {
            return Err(format!(
                "node {i} reports address {} instead of {}",
                v["address"],
                s.address()
            ));
        }
        let ids = view_ids(v);
        if ids != own_sorted {
            return Err(format!(
                "node {i} ({}) lists {ids:?}, the nodes are {own_sorted:?}",
                own[i]
            ));
        }
        if v["leader"].as_u64().is_none() || v["leader"].as_u64() != leader {
            return Err(format!(
                "node {i} sees leader {}, node 0 sees {leader:?}",
                v["leader"]
            ));
        }
        let nodes = v["nodes"].as_array().expect("nodes array");
        let leaders: Vec<&Value> = nodes.iter().filter(|m| m["role"] == "leader").collect();
        if leaders.len() != 1 || leaders[0]["id"].as_u64() != leader {
            return Err(format!(
                "node {i}: not exactly one member with role leader = {leader:?}"
            ));
        }
        for m in nodes {
            let id = m["id"].as_u64().unwrap_or(0);
            let k = own.iter().position(|o| *o == id).unwrap_or(usize::MAX);
            if k == usize::MAX || m["address"].as_str() != Some(servers[k].address().as_str()) {
                return Err(format!("node {i} lists member {m} with a wrong address"));
            }
            let role = m["role"].as_str().unwrap_or("");
            if !["leader", "follower", "learner"].contains(&role) {
                return Err(format!("node {i}: member {m} has an unknown role"));
            }
            if settled && role == "learner" {
                return Err(format!("node {i}: member {id} is still a learner"));
            }
        }
    }
    Ok(())
}

/// Poll `GET /cluster` on every server until [`check_one_cluster`] holds (with no learners
/// left); panics with the last views after `limit`. Returns the views.
pub async fn wait_one_cluster(servers: &[&Server], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        let mut why = String::new();
        for (i, s) in servers.iter().enumerate() {
            match s.try_cluster_view().await {
                Some(v) => views.push(v),
                None => {
                    why = format!("node {i} ({}) did not answer GET /cluster", s.address());
                    break;
                }
            }
        }
        if why.is_empty() {
            match check_one_cluster(servers, &views, true) {
                Ok(()) => return views,
                Err(e) => why = e,
            }
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = views.iter().map(|v| v.to_string()).collect();
            panic!(
                "the nodes did not form one cluster within {limit:?}: {why}\nviews:\n{}",
                shown.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll until `f()` returns Some; panics with `what` and the last `Err` text after `limit`.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                if Instant::now() > deadline {
                    panic!("{what}: not within {limit:?}; last state: {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A test cluster: `nodes[i]` runs with `WRS_JOIN` = every node's API address.
pub struct Cluster {
    pub nodes: Vec<Server>,
    /// The environment every node gets (besides ports and `WRS_JOIN`).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// Start `n` nodes at the same moment (spawned back to back in ascending address order) and
    /// wait until they form one cluster with a leader and no learners.
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        Cluster::start_in_order(n, extra, false).await
    }

    /// As [`Cluster::start`]; `reverse` spawns the nodes in descending address order, so the
    /// node that starts the cluster (the smallest address) is spawned last.
    pub async fn start_in_order(n: usize, extra: &[(&str, &str)], reverse: bool) -> Cluster {
        let env = cluster_env(extra);
        let mut last = String::new();
        for _attempt in 0..4 {
            let ports = free_ports(2 * n);
            let mut pairs: Vec<(u16, u16)> =
                (0..n).map(|i| (ports[2 * i], ports[2 * i + 1])).collect();
            // Ascending by the address string, the order the bootstrap rule compares.
            pairs.sort_by_key(|(api, _)| format!("127.0.0.1:{api}"));
            let join = pairs
                .iter()
                .map(|(api, _)| format!("127.0.0.1:{api}"))
                .collect::<Vec<_>>()
                .join(",");
            let mut node_env = env.clone();
            node_env.push(("WRS_JOIN".into(), join));
            let mut order: Vec<usize> = (0..n).collect();
            if reverse {
                order.reverse();
            }
            let mut spawned: Vec<Option<Server>> = (0..n).map(|_| None).collect();
            for &i in &order {
                spawned[i] = Some(Server::spawn_on(pairs[i].0, pairs[i].1, &node_env));
            }
            let mut nodes: Vec<Server> = spawned.into_iter().map(|s| s.expect("spawned")).collect();
            let mut failed = None;
            for (i, s) in nodes.iter_mut().enumerate() {
                if let Err(e) = s.wait_up(FORM).await {
                    failed = Some((i, e));
                    break;
                }
            }
            match failed {
                None => {
                    let c = Cluster { nodes, env };
                    c.wait_formed().await;
                    return c;
                }
                Some((i, e)) => {
                    last = format!("node {i}: {e}\n{}", nodes[i].logs());
                    let taken = port_taken(&last);
                    for s in nodes.iter_mut() {
                        s.kill_hard();
                    }
                    if !taken {
                        break;
                    }
                }
            }
        }
        panic!("the cluster did not start:\n{last}");
    }

    /// All nodes, as references (for [`wait_one_cluster`]).
    pub fn all(&self) -> Vec<&Server> {
        self.nodes.iter().collect()
    }

    /// The nodes whose index is not in `except`.
    pub fn others(&self, except: &[usize]) -> Vec<&Server> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !except.contains(i))
            .map(|(_, s)| s)
            .collect()
    }

    /// Wait until every node agrees on one cluster of all nodes; returns the views.
    pub async fn wait_formed(&self) -> Vec<Value> {
        wait_one_cluster(&self.all(), FORM).await
    }

    /// `WRS_JOIN` naming every node's API address.
    pub fn join_list(&self) -> String {
        self.nodes
            .iter()
            .map(Server::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node that is the leader in every node's view (after convergence).
    pub async fn leader_index(&self) -> usize {
        let views = self.wait_formed().await;
        let leader = views[0]["leader"].as_u64().expect("a leader");
        views
            .iter()
            .position(|v| v["id"].as_u64() == Some(leader))
            .expect("the leader is one of the nodes")
    }

    /// Start one more node (new ports) with `WRS_JOIN` = every node's address, itself included;
    /// returns its index. Does not wait for it to join.
    pub async fn add_node(&mut self) -> usize {
        let mut last = String::new();
        for _attempt in 0..4 {
            let ports = free_ports(2);
            let mut env = self.env.clone();
            let join = format!("{},127.0.0.1:{}", self.join_list(), ports[0]);
            env.push(("WRS_JOIN".into(), join));
            let mut s = Server::spawn_on(ports[0], ports[1], &env);
            match s.wait_up(FORM).await {
                Ok(()) => {
                    self.nodes.push(s);
                    return self.nodes.len() - 1;
                }
                Err(e) => {
                    last = format!("{e}\n{}", s.logs());
                    s.kill_hard();
                    if !port_taken(&last) {
                        break;
                    }
                }
            }
        }
        panic!("the new node did not start:\n{last}");
    }

    /// Start node `i` again on its old ports (after [`Server::kill_hard`] or an exit), with
    /// `WRS_JOIN` = every node's address. The old process's log is dropped with it.
    pub async fn restart(&mut self, i: usize) {
        let (api, node) = (self.nodes[i].api_port, self.nodes[i].node_port);
        self.nodes[i].kill_hard();
        let mut env = self.env.clone();
        env.push(("WRS_JOIN".into(), self.join_list()));
        let mut s = Server::spawn_on(api, node, &env);
        let up = s.wait_up(FORM).await;
        if let Err(e) = up {
            let logs = s.logs();
            s.kill_hard();
            panic!("node {i} did not start again on its ports: {e}\n{logs}");
        }
        self.nodes[i] = s;
    }
}

/// How a run that was expected to stop at start ended.
pub struct Exit {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

/// Run the binary with `envs` on fresh ports; it must exit within 10 s.
pub async fn run_with_env(envs: &[(&str, &str)]) -> Exit {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all: Vec<(String, String)> = vec![
        ("WRS_BIND".into(), "127.0.0.1".into()),
        ("WRS_API_PORT".into(), free_port().to_string()),
        ("WRS_NODE_PORT".into(), free_port().to_string()),
    ];
    for (k, v) in envs {
        all.retain(|(ek, _)| ek != k);
        all.push((k.to_string(), v.to_string()));
    }
    let mut child = spawn_wrs(dir.path(), &all);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default();
    match status {
        None => {
            panic!("wrs with {envs:?} did not exit within 10 s\nstdout: {stdout}\nstderr: {stderr}")
        }
        Some(st) => Exit {
            code: st.code(),
            stderr,
            stdout,
        },
    }
}

pub fn assert_config_error(out: &Exit, var: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "exit code {:?} for bad {var}; stderr: {}",
        out.code,
        out.stderr
    );
    assert!(
        out.stderr.contains(var),
        "stderr does not name {var}:\nstderr: {}\nstdout: {}",
        out.stderr,
        out.stdout
    );
}
