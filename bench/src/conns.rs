//! `conns`: open N idle WebSocket connections to one channel in steps, hold them, and read the
//! server's RSS (VmRSS from /proc/<pid>/status; the server must run on this machine and its pid
//! be given with `--pid`) after each step. Connections come from many 127.0.0.x source addresses
//! so repeated runs do not run out of ephemeral ports (TIME_WAIT).
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use crate::common::*;
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::Common;

pub struct ConnsArgs {
    pub conns: usize,
    pub step: usize,
    pub hold: Duration,
    pub concurrency: usize,
    pub src_ips: u32,
}

pub async fn run(c: &Common, a: ConnsArgs) -> AnyResult<Outcome> {
    let node = &c.nodes[0];
    let mut out = Outcome::new("conns", format!("{}", a.conns), &c.label, "conns held");
    out.param("conns", a.conns);
    out.param("step", a.step);
    out.param("hold_s", a.hold.as_secs_f64());
    let limit = raise_fd_limit();
    out.extra("client_fd_limit", limit);
    if (limit as usize) < a.conns + 100 {
        out.error(format!(
            "fd limit {limit} is below {} connections; raise `ulimit -n`",
            a.conns
        ));
    }
    let mut http = HttpConn::connect(node).await?;
    let ch = create_channel(&mut http, "pub-sub").await?;
    drop(http);
    let settle = Duration::from_millis(500);
    tokio::time::sleep(settle).await;
    let rss0 = c.pid.and_then(rss_kib);
    let mut held: Vec<Ws> = Vec::with_capacity(a.conns);
    let mut curve = Vec::new();
    if let Some(r) = rss0 {
        curve.push(json!([0, r]));
    }
    let started = now_ns();
    let mut failed = 0u64;
    let mut next = 0usize;
    while next < a.conns {
        let target = (next + a.step.max(1)).min(a.conns);
        let mut set = JoinSet::new();
        while next < target || !set.is_empty() {
            while next < target && set.len() < a.concurrency.max(1) {
                let ip =
                    Ipv4Addr::new(127, 0, 0, 2 + (next as u32 % a.src_ips.clamp(1, 250)) as u8);
                let (node, path) = (node.clone(), ch.connect.clone());
                set.spawn(async move { ws_connect(&node, &path, Some(ip)).await });
                next += 1;
            }
            if let Some(r) = set.join_next().await {
                match r.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(ws) => held.push(ws),
                    Err(e) => {
                        failed += 1;
                        out.error(format!("connect: {e}"));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(r) = c.pid.and_then(rss_kib) {
            curve.push(json!([held.len(), r]));
        }
    }
    let open_s = (now_ns() - started) as f64 / 1e9;
    tokio::time::sleep(a.hold).await;
    let rss1 = c.pid.and_then(rss_kib);
    // still open? ask the server how many clients the channel has
    let mut clients_seen = None;
    if let Ok(mut http) = HttpConn::connect(node).await {
        if let Ok((200, body)) = http
            .request("GET", &format!("/channels/{}", ch.id), None)
            .await
        {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            clients_seen = v["data"]["clients"].as_u64();
        }
    }
    let ok = held.len();
    out.rate = ok as f64;
    out.secs = open_s;
    out.extra("ok", ok as u64);
    out.extra("failed", failed);
    out.extra("open_s", open_s);
    out.extra("connects_per_s", ok as f64 / open_s.max(1e-9));
    if let Some(n) = clients_seen {
        out.extra("server_clients", n);
    }
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        out.extra("rss_before_kib", r0);
        out.extra("rss_after_kib", r1);
        out.extra("kib_per_conn", (r1 as f64 - r0 as f64) / (ok.max(1) as f64));
    }
    if let Some(r) = rss_kib(std::process::id()) {
        out.extra("client_rss_kib", r);
    }
    out.extra("curve", curve);
    drop(held);
    delete_channel(node, &ch.id).await;
    // does the server give the memory back once the connections are gone?
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if let Some(r) = c.pid.and_then(rss_kib) {
        out.extra("rss_closed_kib", r);
    }
    Ok(out)
}
