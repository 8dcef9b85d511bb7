//! `baseline-relay`: the raw reference that `wrs-bench` measures wrs against.
//!
//! A relay with no features: tokio + tokio-tungstenite, one unbounded queue and one writer task
//! per client (the writer drains its queue and flushes once per batch), a `Mutex<Vec>` per room.
//! It speaks the same URL shapes as wrs so the same generator drives both:
//! `POST /channels {"pattern"}` (trivial, no validation), `GET`/`DELETE /channels/{id}`, and
//! `GET /channels/{id}/connect?token=...` (the token is not checked). A channel whose pattern is
//! `echo` echoes; every other pattern broadcasts each message to the room's other clients.
//!
//! `BASELINE_PORT` (default 18081), `BASELINE_BIND` (default 127.0.0.1), `BASELINE_WORKERS`
//! (default 2) configure it.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Room = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Message>)>>>;

struct Channel {
    echo: bool,
    room: Room,
}

#[derive(Default)]
struct State {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    ids: AtomicU64,
}

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let addr = format!(
        "{}:{}",
        env("BASELINE_BIND", "127.0.0.1"),
        env("BASELINE_PORT", "18081")
    );
    let workers: usize = env("BASELINE_WORKERS", "2")
        .parse()
        .expect("BASELINE_WORKERS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        eprintln!("baseline-relay listening on {addr}");
        let state = Arc::new(State::default());
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(conn(sock, Arc::clone(&state)));
        }
    });
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One keep-alive HTTP/1.1 connection; it becomes a WebSocket on an upgrade.
async fn conn(mut sock: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 * 1024 || read_more(&mut sock, &mut buf).await == 0 {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        };
        let body_len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let key = header("sec-websocket-key").map(str::to_owned);
        let (method, path) = (
            req.method.unwrap_or("").to_owned(),
            req.path.unwrap_or("").to_owned(),
        );
        while buf.len() < head_len + body_len {
            if read_more(&mut sock, &mut buf).await == 0 {
                return;
            }
        }
        let body = buf[head_len..head_len + body_len].to_vec();
        buf.drain(..head_len + body_len);
        let parts: Vec<&str> = path.split('?').next().unwrap_or("").split('/').collect();
        let channel = |id: &str| state.channels.lock().unwrap().get(id).cloned();
        let reply = match (method.as_str(), parts.as_slice()) {
            ("POST", ["", "channels" | "channel"]) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let pattern = v["pattern"].as_str().unwrap_or("pub-sub").to_owned();
                let id = format!("b{}", state.ids.fetch_add(1, Ordering::Relaxed));
                let ch = Channel {
                    echo: pattern == "echo",
                    room: Room::default(),
                };
                state
                    .channels
                    .lock()
                    .unwrap()
                    .insert(id.clone(), Arc::new(ch));
                let body = serde_json::json!({"message": "created", "token": "t",
                    "connect": format!("/channels/{id}/connect?token=t"),
                    "data": {"id": id, "pattern": pattern}});
                response("201 Created", &body.to_string())
            }
            ("GET", ["", "channels" | "channel", id]) => match channel(id) {
                Some(ch) => {
                    let n = ch.room.lock().unwrap().len();
                    response(
                        "200 OK",
                        &format!(r#"{{"data":{{"id":"{id}","clients":{n}}}}}"#),
                    )
                }
                None => response("404 Not Found", r#"{"error":"channel_not_found"}"#),
            },
            ("DELETE", ["", "channels" | "channel", id]) => {
                match state.channels.lock().unwrap().remove(*id) {
                    Some(_) => response("200 OK", r#"{"message":"deleted"}"#),
                    None => response("404 Not Found", r#"{"error":"channel_not_found"}"#),
                }
            }
            ("GET", ["", "channels" | "channel", id, "connect"]) => match (channel(id), key) {
                (Some(ch), Some(key)) => {
                    let accept = derive_accept_key(key.as_bytes());
                    let head = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n");
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let config = WebSocketConfig::default().read_buffer_size(4096);
                    let ws =
                        WebSocketStream::from_partially_read(sock, buf, Role::Server, Some(config))
                            .await;
                    return websocket(ws, &ch, state.ids.fetch_add(1, Ordering::Relaxed)).await;
                }
                _ => response("404 Not Found", r#"{"error":"channel_not_found"}"#),
            },
            _ => response("404 Not Found", r#"{"error":"not_found"}"#),
        };
        if sock.write_all(&reply).await.is_err() {
            return;
        }
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    match sock.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

async fn websocket(mut ws: WebSocketStream<TcpStream>, ch: &Channel, me: u64) {
    if ch.echo {
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        return;
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut ok = sink.feed(msg).await.is_ok();
            while let (true, Ok(msg)) = (ok, rx.try_recv()) {
                ok = sink.feed(msg).await.is_ok();
            }
            if !ok || sink.flush().await.is_err() {
                break;
            }
        }
    });
    ch.room.lock().unwrap().push((me, tx));
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_text() || msg.is_binary() {
            for (id, tx) in ch.room.lock().unwrap().iter() {
                if *id != me {
                    let _ = tx.send(msg.clone());
                }
            }
        } else if msg.is_close() {
            break;
        }
    }
    ch.room.lock().unwrap().retain(|(id, _)| *id != me);
    writer.abort();
}
