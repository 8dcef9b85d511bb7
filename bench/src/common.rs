//! What every scenario shares: target nodes, the clock, the measurement window, latency
//! histograms, payloads with timestamps and sequence numbers, WebSocket connects, channel
//! creation, the result record and its human line.
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;
pub type AnyResult<T> = Result<T, String>;

/// One server node, given as `http://host:port` (the path, if any, is ignored).
#[derive(Clone, Debug)]
pub struct Node {
    pub addr: SocketAddr,
    pub host: String,
}

impl Node {
    pub fn parse(url: &str) -> AnyResult<Node> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        let hostport = rest.split('/').next().unwrap_or(rest);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .map_err(|e| format!("bad node url {url}: {e}"))?
            .next()
            .ok_or_else(|| format!("bad node url {url}"))?;
        Ok(Node {
            addr,
            host: hostport.to_string(),
        })
    }
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on one monotonic clock shared by every task of this process; payload timestamps
/// use it, so delivery latency needs no clock sync (publishers and subscribers are both here).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// How late a paced sender may be before its lateness counts as the server's: tokio's timer
/// has a 1 ms tick and a shared 2-core box adds scheduling jitter.
pub const PACING_SLACK_NS: u64 = 2_000_000;

/// Wait for a scheduled send time and return the timestamp to measure from: the actual time
/// when the generator was on schedule (within `PACING_SLACK_NS`), otherwise the scheduled time
/// plus the slack — a generator held back by the server (flow control, a full socket) charges
/// that wait to the server, so a stall cannot hide (no coordinated omission).
pub async fn paced(due: u64) -> u64 {
    sleep_until_ns(due).await;
    now_ns().min(due + PACING_SLACK_NS)
}

pub async fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

/// The measurement window: events are counted (and latencies recorded) only inside it, which
/// leaves the warm-up (connects, slow start) and the drain out of every number.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    pub fn new(warmup: Duration, duration: Duration) -> Window {
        let start = now_ns() + warmup.as_nanos() as u64;
        Window {
            start,
            end: start + duration.as_nanos() as u64,
        }
    }
    pub fn contains(&self, t: u64) -> bool {
        t >= self.start && t < self.end
    }
    pub fn secs(&self) -> f64 {
        (self.end - self.start) as f64 / 1e9
    }
    pub fn over(&self) -> bool {
        now_ns() >= self.end
    }
}

/// Latency histogram in nanoseconds (1 µs .. 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1_000));
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Lat {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
}

impl Lat {
    pub fn of(h: &Histogram<u64>) -> Lat {
        if h.is_empty() {
            return Lat::default();
        }
        let ms = |v: u64| v as f64 / 1e6;
        Lat {
            count: h.len(),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            min_ms: ms(h.min()),
        }
    }
}

/// One run of one scenario against one server: what gets printed and written as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub scenario: String,
    /// The configuration within the scenario, e.g. `1x100` for one publisher, 100 subscribers.
    pub key: String,
    /// Which server: `wrs`, `baseline`, ...
    pub label: String,
    /// Events per second inside the window (deliveries, round trips, requests, ...).
    pub rate: f64,
    /// What `rate` counts.
    pub unit: String,
    pub secs: f64,
    pub lat: Lat,
    pub errors: u64,
    /// Short text for the first error of each kind.
    pub error_samples: Vec<String>,
    pub params: Map<String, Value>,
    pub extra: Map<String, Value>,
}

impl Outcome {
    pub fn new(scenario: &str, key: String, label: &str, unit: &str) -> Outcome {
        Outcome {
            scenario: scenario.into(),
            key,
            label: label.into(),
            unit: unit.into(),
            ..Outcome::default()
        }
    }
    pub fn param(&mut self, k: &str, v: impl Into<Value>) {
        self.params.insert(k.into(), v.into());
    }
    pub fn extra(&mut self, k: &str, v: impl Into<Value>) {
        self.extra.insert(k.into(), v.into());
    }
    pub fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        let s = e.to_string();
        if self.error_samples.len() < 5 && !self.error_samples.contains(&s) {
            self.error_samples.push(s);
        }
    }
    pub fn merge_errors(&mut self, errors: Errors) {
        self.errors += errors.count;
        for s in errors.samples {
            if self.error_samples.len() < 5 && !self.error_samples.contains(&s) {
                self.error_samples.push(s);
            }
        }
    }
}

/// Errors collected inside one task.
#[derive(Default, Debug)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, e: impl std::fmt::Display) {
        self.count += 1;
        if self.samples.len() < 3 {
            self.samples.push(e.to_string());
        }
    }
    pub fn merge(&mut self, o: Errors) {
        self.count += o.count;
        for s in o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }
}

pub fn table_header() -> String {
    format!(
        "{:<9} {:<10} {:<9} {:>13} {:<12} {:>8} {:>8} {:>8} {:>8} {:>6}  extra",
        "scenario",
        "key",
        "server",
        "rate",
        "unit",
        "p50 ms",
        "p99 ms",
        "max ms",
        "count",
        "errors"
    )
}

pub fn table_row(o: &Outcome) -> String {
    let mut extra: Vec<String> = Vec::new();
    for (k, v) in &o.extra {
        if v.is_number() || v.is_string() || v.is_boolean() {
            let s = match v.as_f64() {
                Some(f) if v.is_f64() => format!("{f:.3}"),
                _ => v.to_string(),
            };
            extra.push(format!("{k}={s}"));
        }
    }
    format!(
        "{:<9} {:<10} {:<9} {:>13.1} {:<12} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>6}  {}",
        o.scenario,
        o.key,
        o.label,
        o.rate,
        o.unit,
        o.lat.p50_ms,
        o.lat.p99_ms,
        o.lat.max_ms,
        o.lat.count,
        o.errors,
        extra.join(" ")
    )
}

/// Raise the soft open-file limit to the hard limit (the conns scenario holds thousands).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        let cur = r.rlim_cur as u64;
        cur
    }
}

/// CPU time (clock ticks) of the whole machine (busy, total) and of one process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSample {
    busy: u64,
    total: u64,
    me: u64,
    server: u64,
}

fn proc_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // fields after the ")" of the command name: state is field 3, utime 14, stime 15
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

impl CpuSample {
    pub fn take(server: Option<u32>) -> CpuSample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        CpuSample {
            busy: total.saturating_sub(idle),
            total,
            me: proc_ticks(std::process::id()),
            server: server.map_or(0, proc_ticks),
        }
    }
    /// (machine busy %, generator %, server %, everything else %) of the machine's capacity
    /// between two samples. "Everything else" is the noise indicator: other processes' work.
    pub fn since(&self, start: &CpuSample) -> Option<(f64, f64, f64, f64)> {
        let total = self.total.checked_sub(start.total)? as f64;
        if total <= 0.0 {
            return None;
        }
        let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total;
        let busy = pct(self.busy, start.busy);
        let me = pct(self.me, start.me);
        let server = pct(self.server, start.server);
        Some((busy, me, server, (busy - me - server).max(0.0)))
    }
}

/// VmRSS of a process in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The client side keeps its buffers small: tungstenite's 128 KiB default read buffer would
/// make the generator, not the server, the thing measured by `conns`.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Open a WebSocket to `path` (e.g. `/channels/ID/connect?token=T`) on `node`, optionally from a
/// given 127.0.0.x source address (many source addresses keep ephemeral ports from running out).
pub async fn ws_connect(node: &Node, path: &str, src: Option<Ipv4Addr>) -> AnyResult<Ws> {
    let sock = if node.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = src {
        let _ = sock.set_reuseaddr(true);
        sock.bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = sock
        .connect(node.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}{}", node.host, path);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("ws handshake: {e}"))?;
    Ok(ws)
}

/// A channel as the create response describes it.
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub connect: String,
    /// The full WebSocket URL the response handed out (`url`), if it had one.
    pub url: Option<String>,
}

pub fn parse_created(body: &[u8]) -> AnyResult<Channel> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("create response: {e}"))?;
    let id = v["data"]["id"]
        .as_str()
        .ok_or("create response has no data.id")?
        .to_string();
    let connect = match v["connect"].as_str() {
        Some(c) => c.to_string(),
        None => format!(
            "/channels/{id}/connect?token={}",
            v["token"].as_str().unwrap_or("")
        ),
    };
    let url = v["url"].as_str().map(str::to_owned);
    Ok(Channel { id, connect, url })
}

/// Payload of a relayed message: `PPPPP SSSSSSSSSSSS TTTTTTTTTTTTTTTTTTT ` (publisher id,
/// sequence number, send timestamp in ns), padded with `x` to `size` bytes. Plain ASCII, so it
/// travels as a text frame like a browser client's JSON would.
pub const HEADER_LEN: usize = 39;

pub fn payload(publisher: u32, seq: u64, ts: u64, size: usize) -> String {
    let mut s = format!("{publisher:05} {seq:012} {ts:019} ");
    if size > s.len() {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    s
}

fn digits(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// (publisher, seq, timestamp) of a payload built by `payload`.
pub fn parse_payload(b: &[u8]) -> Option<(u32, u64, u64)> {
    if b.len() < HEADER_LEN - 1 {
        return None;
    }
    Some((
        digits(&b[0..5])? as u32,
        digits(&b[6..18])?,
        digits(&b[19..38])?,
    ))
}

/// Per-(receiver, publisher) sequence tracking: gaps are lost messages, repeats are duplicates.
#[derive(Clone, Debug, Default)]
pub struct SeqTrack {
    pub next: u64,
    pub lost: u64,
    pub dup: u64,
}

impl SeqTrack {
    pub fn see(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.lost += seq - self.next;
            self.next = seq + 1;
        } else {
            self.dup += 1;
        }
    }
    /// Lost in total once the publisher is known to have sent `sent` messages.
    pub fn lost_after(&self, sent: u64) -> u64 {
        self.lost + sent.saturating_sub(self.next)
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_has_the_asked_size() {
        let p = payload(7, 123_456, 9_876_543_210, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(
            parse_payload(p.as_bytes()),
            Some((7, 123_456, 9_876_543_210))
        );
        // smaller than the header: the header alone
        assert_eq!(payload(1, 2, 3, 8).len(), HEADER_LEN);
        assert_eq!(
            parse_payload(b"not a payload at all, nope, not at all"),
            None
        );
    }

    #[test]
    fn seq_track_counts_gaps_and_repeats() {
        let mut t = SeqTrack::default();
        for s in [0, 1, 3, 3, 4] {
            t.see(s);
        }
        assert_eq!((t.lost, t.dup, t.next), (1, 1, 5));
        assert_eq!(t.lost_after(7), 3);
    }

    #[test]
    fn window_and_median() {
        let w = Window { start: 10, end: 20 };
        assert!(w.contains(10) && w.contains(19) && !w.contains(20) && !w.contains(9));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn node_urls() {
        let n = Node::parse("http://127.0.0.1:18080/whatever").unwrap();
        assert_eq!(n.host, "127.0.0.1:18080");
        assert_eq!(n.addr.port(), 18080);
        assert!(Node::parse("http://nohost").is_err());
    }

    #[test]
    fn create_response_without_connect_builds_the_path() {
        let ch = parse_created(br#"{"token":"T","data":{"id":"abc"}}"#).unwrap();
        assert_eq!(ch.connect, "/channels/abc/connect?token=T");
        let ch = parse_created(br#"{"token":"T","connect":"/x","data":{"id":"abc"}}"#).unwrap();
        assert_eq!(ch.connect, "/x");
        assert_eq!(ch.url, None);
        let ch = parse_created(
            br#"{"token":"T","url":"ws://127.0.0.1:18302/x","connect":"/x","data":{"id":"abc"}}"#,
        )
        .unwrap();
        assert_eq!(ch.url.as_deref(), Some("ws://127.0.0.1:18302/x"));
        let node = Node::parse(ch.url.as_deref().unwrap()).unwrap();
        assert_eq!(node.host, "127.0.0.1:18302");
    }
}
