//! Chaos (bounded, runs in every CI run): a three-node cluster under mixed load — a creator of
//! pub-sub and push-pull channels that also deletes some, and publisher/subscriber pairs on
//! different nodes — while a driver kills (`kill -9`, then restarts on the same ports, on its
//! data directory — `WRS_DATA_DIR`, the same member again — or on an emptied one, a new member) or
//! SIGSTOPs (then SIGCONTs) one random node at a time, waiting for the cluster to heal (one
//! leader, every member up) before the next fault, so quorum is never lost.
//!
//! At the end, after healing: (1) no acknowledged channel is lost — every channel whose POST
//! answered 201 and that was not deleted (DELETE answered 2xx) is GET 200 on every node, every
//! deleted one 404; (2) every such channel accepts a WebSocket connect with its token on every
//! node within `WRS_NODE_DOWN_AFTER` + 5 s; (3) every subscriber saw its publisher's
//! `seq:N` messages strictly increasing (never twice, never out of order), across reconnects;
//! (4) every gap in a subscriber's stream falls within a few seconds of a fault; a socket
//! closed by a node that had no fault around that moment is a failure too (clients on
//! survivors stay connected through a failover); after healing, every subscriber receives
//! again. Kills are also timed: from `kill -9` until a sample of channels (the pairs' and up to
//! nine more) accepts a connect on both survivors (median and max are printed, and how many
//! took longer than `WRS_NODE_DOWN_AFTER` + 5 s; one that does not complete within `FORM` fails).
//!
//! Randomness comes from a seeded xorshift; the seed is printed and `WRS_CHAOS_SEED=<n>`
//! replays its choices (the timing of the processes is not replayable, the choices are).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::ws::Message;
use futures_util::future::{join, join_all};
use serde_json::{json, Value};
use wrs_test_support::*;

/// The failure detector: a member silent this long is marked down and its channels move.
const DOWN_AFTER_MS: u64 = 1500;
/// Removal is armed but longer than any fault here (a stop lasts at most 4 s, a killed node is
/// back within ~4 s as itself, or — its directory emptied — under a new id, which retires the
/// old one at once), so a
/// removal is never needed to heal; `wrs_cluster_removals_total` is reported, and a node that
/// stayed stuck would still be cleaned up rather than leave a permanently down member.
const REMOVE_AFTER_MS: u64 = 8000;
/// Faults are injected for this long (the whole test then takes ~60–80 s).
const CHAOS_PHASE: Duration = Duration::from_secs(50);
/// Publisher/subscriber pairs (each on its own pub-sub channel).
const PAIRS: usize = 3;
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// A gap or a close is blamed on a fault when it falls within [start - BEFORE, healed + AFTER].
const WINDOW_BEFORE: Duration = Duration::from_millis(500);
const WINDOW_AFTER: Duration = Duration::from_secs(3);
/// How long any request of the load may take before it counts as failed.
const REQ_LIMIT: Duration = Duration::from_secs(3);

fn connect_bound() -> Duration {
    Duration::from_millis(DOWN_AFTER_MS) + Duration::from_secs(5)
}

// ---------------------------------------------------------------------------------------------
// A tiny seeded RNG (xorshift64*, seeded through splitmix64).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---------------------------------------------------------------------------------------------
// What the load and the driver share (one thread: actix tasks on the test's runtime).

#[derive(Clone, Copy, Debug, PartialEq)]
enum FaultKind {
    Kill,
    Stop,
}

struct Fault {
    kind: FaultKind,
    node: usize,
    start: Instant,
    /// When the cluster was healed again (None while it lasts).
    end: Option<Instant>,
}

#[derive(Clone)]
struct Chan {
    id: String,
    token: String,
    /// A pair's channel: never deleted by the creator.
    protected: bool,
}

struct Gap {
    after: u64,
    next: u64,
    from: Instant,
    to: Instant,
}

#[derive(Default)]
struct Pair {
    id: String,
    token: String,
    pub_home: usize,
    sub_home: usize,
    /// The last sequence number the publisher handed to a socket without an error.
    sent: u64,
    received: u64,
    last: Option<u64>,
    last_at: Option<Instant>,
    gaps: Vec<Gap>,
    pub_reconnects: u32,
    sub_reconnects: u32,
}

struct State {
    t0: Instant,
    ports: Vec<u16>,
    faulty: Option<usize>,
    faults: Vec<Fault>,
    channels: Vec<Chan>,
    deleted: Vec<String>,
    /// A DELETE without a 2xx answer (it may or may not have been committed): not checked.
    uncertain: HashSet<String>,
    deleting: HashSet<String>,
    creates_ok: u32,
    creates_failed: BTreeMap<String, u32>,
    deletes_ok: u32,
    deletes_failed: BTreeMap<String, u32>,
    pairs: Vec<Pair>,
    stop_creator: bool,
    stop_messaging: bool,
    violations: Vec<String>,
    /// Closes that a fault explains (for the report).
    expected_closes: u32,
}

type Shared = Rc<RefCell<State>>;

impl State {
    /// `at` as seconds since the start and as UTC wall-clock time (as in the nodes' logs).
    fn t(&self, at: Instant) -> String {
        format!(
            "{:.2}s ({})",
            at.saturating_duration_since(self.t0).as_secs_f64(),
            wall(at)
        )
    }

    /// Whether [from, to] overlaps a fault window (on `node`, when given).
    fn fault_near(&self, node: Option<usize>, from: Instant, to: Instant) -> bool {
        self.near(node, from, to).is_some()
    }

    /// The fault whose window overlaps [from, to], described.
    fn near(&self, node: Option<usize>, from: Instant, to: Instant) -> Option<String> {
        let now = Instant::now();
        self.faults
            .iter()
            .rev()
            .find(|f| {
                node.is_none_or(|n| n == f.node)
                    && from <= f.end.unwrap_or(now) + WINDOW_AFTER
                    && to + WINDOW_BEFORE >= f.start
            })
            .map(|f| format!("{:?} of node {} at {}", f.kind, f.node, self.t(f.start)))
    }

    /// A node that is not faulty: `prefer` when possible.
    fn pick(&self, rng: &mut Rng, prefer: Option<usize>) -> usize {
        if let Some(p) = prefer {
            if self.faulty != Some(p) {
                return p;
            }
        }
        let live: Vec<usize> = (0..self.ports.len())
            .filter(|i| self.faulty != Some(*i))
            .collect();
        live[rng.below(live.len() as u64) as usize]
    }

    fn gone(&self, id: &str) -> bool {
        self.uncertain.contains(id)
            || self.deleting.contains(id)
            || self.deleted.iter().any(|d| d == id)
    }

    fn violation(&mut self, what: String) {
        eprintln!("[{}] VIOLATION: {what}", self.t(Instant::now()));
        self.violations.push(what);
    }
}

/// An instant as UTC time of day, `HH:MM:SS.mmm`.
fn wall(at: Instant) -> String {
    let now = std::time::SystemTime::now();
    let back = Instant::now().saturating_duration_since(at);
    let ms = now
        .checked_sub(back)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

/// Where the nodes' logs go: every killed process's before its restart, everyone's at the end
/// when an invariant failed (the directory is removed when the test passes).
fn log_dir(seed: u64) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wrs-chaos-{seed}"))
}

fn save_log(seed: u64, name: &str, s: &Server) {
    let dir = log_dir(seed);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), s.logs());
}

/// Saves every node's log, then fails with `why`.
fn fail_with_logs(seed: u64, c: &Cluster, why: String) -> ! {
    for (i, n) in c.nodes.iter().enumerate() {
        save_log(seed, &format!("node{i}-final.log"), n);
    }
    panic!(
        "seed {seed}: {why}\n(the nodes' logs are in {})",
        log_dir(seed).display()
    );
}

// ---------------------------------------------------------------------------------------------
// Requests of the load: its own clients, by port (a restarted node keeps its ports).

async fn http(
    client: &awc::Client,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>), String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let res = request_with(client, &url, method, body, REQ_LIMIT).await?;
    Ok((res.status, res.body))
}

async fn ws_connect(
    client: &awc::Client,
    port: u16,
    id: &str,
    token: &str,
    limit: Duration,
) -> Result<Ws, String> {
    let url = format!("ws://127.0.0.1:{port}{}", Server::connect_path(id, token));
    ws_with(client, &url, None, limit).await
}

/// Connect to the channel on `prefer` (or, every other try or while it is faulty, on another
/// live node) until it works; None once messaging stops.
async fn connect_somewhere(
    st: &Shared,
    client: &awc::Client,
    rng: &mut Rng,
    prefer: usize,
    id: &str,
    token: &str,
) -> Option<(Ws, usize)> {
    let mut attempt = 0u32;
    loop {
        if st.borrow().stop_messaging {
            return None;
        }
        let (node, port) = {
            let s = st.borrow();
            let node = s.pick(rng, attempt.is_multiple_of(2).then_some(prefer));
            (node, s.ports[node])
        };
        attempt += 1;
        match ws_connect(client, port, id, token, Duration::from_secs(2)).await {
            Ok(w) => return Some((w, node)),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A close of a socket to `node`: fine when that node had a fault around now, else recorded.
fn on_close(st: &Shared, who: &str, node: usize, m: &Msg) {
    let now = Instant::now();
    let mut s = st.borrow_mut();
    if s.fault_near(Some(node), now - Duration::from_secs(1), now) {
        s.expected_closes += 1;
    } else {
        let t = s.t(now);
        s.violation(format!(
            "[survivor close] {who}: the socket to node {node} ended at {t} with no fault of that node nearby: {m:?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The load.

async fn creator(st: Shared, seed: u64) {
    let client = http_client(false);
    let mut rng = Rng::new(seed);
    loop {
        tokio::time::sleep(rng.ms(150, 450)).await;
        if st.borrow().stop_creator {
            return;
        }
        let (port, victim) = {
            let s = st.borrow();
            let node = s.pick(&mut rng, None);
            let deletable: Vec<&Chan> = s.channels.iter().filter(|c| !c.protected).collect();
            let victim = (rng.chance(20) && !deletable.is_empty()).then(|| {
                deletable[rng.below(deletable.len() as u64) as usize]
                    .id
                    .clone()
            });
            (s.ports[node], victim)
        };
        if let Some(id) = victim {
            st.borrow_mut().deleting.insert(id.clone());
            let r = http(&client, port, "DELETE", &format!("/channels/{id}"), None).await;
            let mut s = st.borrow_mut();
            s.deleting.remove(&id);
            s.channels.retain(|c| c.id != id);
            match r {
                Ok((code, _)) if (200..300).contains(&code) => {
                    s.deletes_ok += 1;
                    s.deleted.push(id);
                }
                other => {
                    let why = match other {
                        Ok((code, body)) => {
                            format!(
                                "{code} {}",
                                String::from_utf8_lossy(&body)
                                    .chars()
                                    .take(80)
                                    .collect::<String>()
                            )
                        }
                        Err(e) => e,
                    };
                    if why.starts_with("404") {
                        // An acknowledged channel not found: only a lost channel does that
                        // (a DELETE is sent once per channel).
                        let t = s.t(Instant::now());
                        s.violation(format!(
                            "[1 lost channel] DELETE /channels/{id} at {t} on port {port}: {why} (the channel was acknowledged)"
                        ));
                    }
                    *s.deletes_failed.entry(short(&why)).or_default() += 1;
                    s.uncertain.insert(id);
                }
            }
        } else {
            let pattern = if rng.chance(50) {
                "pub-sub"
            } else {
                "push-pull"
            };
            let r = http(
                &client,
                port,
                "POST",
                "/channels",
                Some(&json!({ "pattern": pattern })),
            )
            .await;
            let mut s = st.borrow_mut();
            match r {
                Ok((201, body)) => {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    match (v["data"]["id"].as_str(), v["token"].as_str()) {
                        (Some(id), Some(token)) => {
                            s.creates_ok += 1;
                            s.channels.push(Chan {
                                id: id.to_string(),
                                token: token.to_string(),
                                protected: false,
                            });
                        }
                        _ => {
                            s.violation(format!("[1 create] POST /channels answered 201 with {v}"))
                        }
                    }
                }
                Ok((code, body)) => {
                    let why = format!("{code} {}", String::from_utf8_lossy(&body));
                    *s.creates_failed.entry(short(&why)).or_default() += 1;
                }
                Err(e) => *s.creates_failed.entry(short(&e)).or_default() += 1,
            }
        }
    }
}

/// A failure reason short enough to count by: the status and error code, or the error text.
fn short(why: &str) -> String {
    if let Some(i) = why.find("\"error\":\"") {
        let rest = &why[i + 9..];
        let code = rest.split('"').next().unwrap_or("");
        return format!("{} {code}", &why[..3]);
    }
    why.chars().take(40).collect()
}

/// Pair `k`'s channel id, token, and the node one of its ends prefers (`home`).
fn pair_channel(st: &Shared, k: usize, home: impl Fn(&Pair) -> usize) -> (String, String, usize) {
    let s = st.borrow();
    let p = &s.pairs[k];
    (p.id.clone(), p.token.clone(), home(p))
}

/// A pair end's socket and the node it is on, (re)connected when there is none; `None` once
/// messaging stops.
async fn socket<'a>(
    ws: &'a mut Option<(Ws, usize)>,
    st: &Shared,
    client: &awc::Client,
    rng: &mut Rng,
    home: usize,
    id: &str,
    token: &str,
) -> Option<(&'a mut Ws, usize)> {
    if st.borrow().stop_messaging {
        return None;
    }
    if ws.is_none() {
        *ws = connect_somewhere(st, client, rng, home, id, token).await;
    }
    ws.as_mut().map(|(w, node)| (w, *node))
}

async fn publisher(st: Shared, k: usize, seed: u64) {
    let client = http_client(false);
    let mut rng = Rng::new(seed);
    let (id, token, home) = pair_channel(&st, k, |p| p.pub_home);
    let mut ws: Option<(Ws, usize)> = None;
    let mut seq = 0u64;
    loop {
        let Some((w, node)) = socket(&mut ws, &st, &client, &mut rng, home, &id, &token).await
        else {
            return;
        };
        match w
            .try_send(Message::Text(format!("seq:{}", seq + 1).into()))
            .await
        {
            Ok(()) => {
                seq += 1;
                st.borrow_mut().pairs[k].sent = seq;
            }
            Err(e) => {
                on_close(&st, &format!("publisher {k}"), node, &Msg::Gone(e));
                st.borrow_mut().pairs[k].pub_reconnects += 1;
                ws = None;
                continue;
            }
        }
        // Paces the publisher, answers pings, notices a close.
        match w.next_event(PUBLISH_EVERY).await {
            None | Some(Msg::Text(_)) | Some(Msg::Binary(_)) => {}
            Some(m) => {
                on_close(&st, &format!("publisher {k}"), node, &m);
                st.borrow_mut().pairs[k].pub_reconnects += 1;
                ws = None;
            }
        }
    }
}

async fn subscriber(st: Shared, k: usize, seed: u64) {
    let client = http_client(false);
    let mut rng = Rng::new(seed);
    let (id, token, home) = pair_channel(&st, k, |p| p.sub_home);
    let mut ws: Option<(Ws, usize)> = None;
    loop {
        let Some((w, node)) = socket(&mut ws, &st, &client, &mut rng, home, &id, &token).await
        else {
            return;
        };
        match w.next_event(Duration::from_millis(200)).await {
            None => {}
            Some(Msg::Text(t)) => {
                let now = Instant::now();
                let mut s = st.borrow_mut();
                let n: Option<u64> = t.strip_prefix("seq:").and_then(|n| n.parse().ok());
                let Some(n) = n else {
                    s.violation(format!("[3 order] subscriber {k} got {t:?}"));
                    continue;
                };
                let at = s.t(now);
                let p = &mut s.pairs[k];
                p.received += 1;
                match p.last {
                    Some(last) if n <= last => {
                        let what = if n == last { "twice" } else { "out of order" };
                        let msg = format!(
                            "[3 order] subscriber {k} (on node {node}) got seq:{n} {what} after seq:{last} at {at}"
                        );
                        s.violation(msg);
                    }
                    Some(last) => {
                        if n > last + 1 {
                            let from = p.last_at.unwrap_or(now);
                            p.gaps.push(Gap {
                                after: last,
                                next: n,
                                from,
                                to: now,
                            });
                        }
                        p.last = Some(n);
                        p.last_at = Some(now);
                    }
                    None => {
                        p.last = Some(n);
                        p.last_at = Some(now);
                    }
                }
            }
            Some(m @ Msg::Binary(_)) => {
                st.borrow_mut()
                    .violation(format!("[3 order] subscriber {k} got {m:?}"));
            }
            Some(m) => {
                on_close(&st, &format!("subscriber {k}"), node, &m);
                st.borrow_mut().pairs[k].sub_reconnects += 1;
                ws = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver's helpers.

/// Poll until every node answers, they describe one cluster of exactly these nodes with one
/// leader and no learners, and every view has every member up.
async fn wait_healed(c: &Cluster, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        let mut why = String::new();
        for (i, s) in c.nodes.iter().enumerate() {
            match s.try_cluster_view().await {
                Some(v) => views.push(v),
                None => {
                    why = format!("node {i} did not answer GET /cluster");
                    break;
                }
            }
        }
        if why.is_empty() {
            match check_one_cluster(&c.all(), &views, true) {
                Ok(()) => {
                    for (i, v) in views.iter().enumerate() {
                        for m in v["nodes"].as_array().into_iter().flatten() {
                            if m["state"] != "up" {
                                why = format!("node {i} sees member {m} not up");
                            }
                        }
                    }
                }
                Err(e) => why = e,
            }
        }
        if why.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = views.iter().map(|v| v.to_string()).collect();
            return Err(format!("{why}\nviews:\n{}", shown.join("\n")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn role_of(c: &Cluster, i: usize) -> &'static str {
    match c.nodes[i].try_cluster_view().await {
        Some(v) if v["leader"] == v["id"] => "leader",
        Some(_) => "follower",
        None => "?",
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// Connect every channel of `chans` on every port of `ports` (retrying each until `deadline`,
/// and at least for a second), with `lanes` connects in flight. Channels deleted meanwhile are
/// skipped. Ok(time from `since` until the last one worked) or Err(what never worked).
async fn connect_all(
    st: &Shared,
    chans: &[Chan],
    ports: &[u16],
    since: Instant,
    deadline: Instant,
    lanes: usize,
) -> Result<Duration, String> {
    let work: Vec<(usize, u16)> = (0..chans.len())
        .flat_map(|k| ports.iter().map(move |p| (k, *p)))
        .collect();
    let lane_work: Vec<Vec<(usize, u16)>> = (0..lanes)
        .map(|l| work.iter().skip(l).step_by(lanes).copied().collect())
        .collect();
    let results = join_all(lane_work.into_iter().map(|items| async move {
        let client = http_client(false);
        let mut last_ok = since;
        let mut failed = Vec::new();
        for (k, port) in items {
            let ch = &chans[k];
            let first = Instant::now();
            loop {
                if st.borrow().gone(&ch.id) {
                    break;
                }
                match ws_connect(&client, port, &ch.id, &ch.token, Duration::from_secs(2)).await {
                    Ok(mut w) => {
                        w.close(1000).await;
                        last_ok = last_ok.max(Instant::now());
                        break;
                    }
                    Err(e) => {
                        let now = Instant::now();
                        if now > deadline && now > first + Duration::from_secs(1) {
                            failed.push(format!("{} on port {port}: {e}", ch.id));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        (last_ok, failed)
    }))
    .await;
    let mut last = since;
    let mut failed = Vec::new();
    for (l, f) in results {
        last = last.max(l);
        failed.extend(f);
    }
    if failed.is_empty() {
        Ok(last - since)
    } else {
        Err(failed.join("; "))
    }
}

async fn metric_sum(c: &Cluster, name: &str) -> f64 {
    let mut sum = 0.0;
    for s in &c.nodes {
        let Ok(r) = s.try_request("GET", "/metrics", None, WAIT).await else {
            continue;
        };
        for line in r.text().lines() {
            if let Some(rest) = line.strip_prefix(name) {
                if rest.starts_with(' ') || rest.starts_with('{') {
                    if let Some(v) = rest
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        sum += v;
                    }
                }
            }
        }
    }
    sum
}

fn median_max(v: &[Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort();
    format!("{:?}/{:?}", s[s.len() / 2], s[s.len() - 1])
}

// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_three_node_cluster_under_mixed_load_survives_kills_stops_and_restarts() {
    let seed: u64 = std::env::var("WRS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("chaos: seed {seed} (WRS_CHAOS_SEED={seed} replays the choices)");
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let down = DOWN_AFTER_MS.to_string();
    let remove = REMOVE_AFTER_MS.to_string();
    let mut c = Cluster::start_durable(
        3,
        &[
            ("WRS_NODE_DOWN_AFTER", down.as_str()),
            ("WRS_NODE_REMOVE_AFTER", remove.as_str()),
        ],
    )
    .await;
    let ports: Vec<u16> = c.nodes.iter().map(|s| s.api_port).collect();
    let st: Shared = Rc::new(RefCell::new(State {
        t0,
        ports: ports.clone(),
        faulty: None,
        faults: Vec::new(),
        channels: Vec::new(),
        deleted: Vec::new(),
        uncertain: HashSet::new(),
        deleting: HashSet::new(),
        creates_ok: 0,
        creates_failed: BTreeMap::new(),
        deletes_ok: 0,
        deletes_failed: BTreeMap::new(),
        pairs: Vec::new(),
        stop_creator: false,
        stop_messaging: false,
        violations: Vec::new(),
        expected_closes: 0,
    }));

    // The pairs' channels, visible everywhere before the load starts.
    for k in 0..PAIRS {
        let ch = c.nodes[k % 3].create(json!({"pattern": "pub-sub"})).await;
        for (i, s) in c.nodes.iter().enumerate() {
            poll_until(&format!("channel {} on node {i}", ch.id), WAIT, || async {
                let r = s
                    .try_request("GET", &format!("/channels/{}", ch.id), None, WAIT)
                    .await?;
                (r.status == 200)
                    .then_some(())
                    .ok_or(format!("{}", r.status))
            })
            .await;
        }
        let mut s = st.borrow_mut();
        s.channels.push(Chan {
            id: ch.id.clone(),
            token: ch.token.clone(),
            protected: true,
        });
        s.pairs.push(Pair {
            id: ch.id,
            token: ch.token,
            pub_home: k % 3,
            sub_home: (k + 1) % 3,
            ..Pair::default()
        });
    }
    let mut tasks = Vec::new();
    for k in 0..PAIRS {
        tasks.push(actix_rt::spawn(subscriber(st.clone(), k, rng.next_u64())));
        tasks.push(actix_rt::spawn(publisher(st.clone(), k, rng.next_u64())));
    }
    poll_until("every subscriber receives", FORM, || async {
        let s = st.borrow();
        let waiting: Vec<usize> = (0..PAIRS).filter(|k| s.pairs[*k].last.is_none()).collect();
        waiting
            .is_empty()
            .then_some(())
            .ok_or(format!("subscribers {waiting:?}"))
    })
    .await;
    let creator_task = actix_rt::spawn(creator(st.clone(), rng.next_u64()));

    // The driver: one fault at a time, healed before the next.
    let mut kills = 0u32;
    let mut kept_dirs = 0u32;
    let mut stops = 0u32;
    let mut failover_times: Vec<Duration> = Vec::new();
    // Failovers slower than DOWN_AFTER + 5 s are counted (printed), not failed: the product
    // promises no bound; one that never completes (within FORM) fails.
    let mut slow_failovers = 0u32;
    let chaos_end = Instant::now() + CHAOS_PHASE;
    while Instant::now() < chaos_end {
        tokio::time::sleep(rng.ms(1000, 3000)).await;
        let i = rng.below(3) as usize;
        let kind = if rng.chance(50) {
            FaultKind::Kill
        } else {
            FaultKind::Stop
        };
        let role = role_of(&c, i).await;
        let start = Instant::now();
        {
            let mut s = st.borrow_mut();
            s.faulty = Some(i);
            s.faults.push(Fault {
                kind,
                node: i,
                start,
                end: None,
            });
        }
        let at = st.borrow().t(start);
        match kind {
            FaultKind::Kill => {
                kills += 1;
                let delay = rng.ms(300, 3000);
                let keep_dir = rng.chance(60);
                kept_dirs += u32::from(keep_dir);
                let sample: Vec<Chan> = {
                    let s = st.borrow();
                    let mut v: Vec<Chan> =
                        s.channels.iter().filter(|c| c.protected).cloned().collect();
                    let others: Vec<&Chan> = s.channels.iter().filter(|c| !c.protected).collect();
                    for _ in 0..9.min(others.len()) {
                        v.push(others[rng.below(others.len() as u64) as usize].clone());
                    }
                    v
                };
                let survivors: Vec<u16> = (0..3).filter(|j| *j != i).map(|j| ports[j]).collect();
                c.nodes[i].kill_hard();
                let killed = Instant::now();
                let probe = connect_all(&st, &sample, &survivors, killed, killed + FORM, 4);
                let how = if keep_dir {
                    "on its data directory"
                } else {
                    "on an emptied data directory"
                };
                eprintln!("[{at}] kill -9 node {i} ({role}), restart in {delay:?} {how}");
                let (probed, ()) = join(probe, async {
                    tokio::time::sleep(delay).await;
                    save_log(
                        seed,
                        &format!("node{i}-killed-at-{:.1}s.log", (killed - t0).as_secs_f64()),
                        &c.nodes[i],
                    );
                    if !keep_dir {
                        let dir = c.data_dir(i);
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    c.restart(i).await;
                })
                .await;
                match probed {
                    Ok(took) => {
                        failover_times.push(took);
                        if took > connect_bound() {
                            slow_failovers += 1;
                        }
                        eprintln!(
                            "[{at}]   node {i} restarted; {} channels connectable on both survivors {took:?} after the kill",
                            sample.len()
                        );
                    }
                    Err(e) => st.borrow_mut().violation(format!(
                        "[failover] after kill -9 of node {i} ({role}) at {at}: not connectable on a survivor within {FORM:?}: {e}"
                    )),
                }
            }
            FaultKind::Stop => {
                stops += 1;
                let pause = rng.ms(500, 4000);
                let pid = c.nodes[i].pid();
                signal(pid, "-STOP");
                tokio::time::sleep(pause).await;
                signal(pid, "-CONT");
                eprintln!("[{at}] SIGSTOP node {i} ({role}) for {pause:?}");
            }
        }
        if let Err(e) = wait_healed(&c, FORM).await {
            fail_with_logs(
                seed,
                &c,
                format!("the cluster did not heal within {FORM:?} after the fault on node {i} at {at}: {e}"),
            );
        }
        let end = Instant::now();
        let mut s = st.borrow_mut();
        s.faulty = None;
        s.faults.last_mut().expect("fault").end = Some(end);
        eprintln!(
            "[{}] healed ({:?} after the fault began)",
            s.t(end),
            end - start
        );
    }

    // Heal, then check.
    st.borrow_mut().stop_creator = true;
    let _ = creator_task.await;
    if let Err(e) = wait_healed(&c, FORM).await {
        fail_with_logs(
            seed,
            &c,
            format!("the cluster did not heal at the end: {e}"),
        );
    }
    let healed = Instant::now();
    let (live, deleted) = {
        let s = st.borrow();
        let live: Vec<Chan> = s
            .channels
            .iter()
            .filter(|c| !s.gone(&c.id))
            .cloned()
            .collect();
        (live, s.deleted.clone())
    };

    // (1) No acknowledged channel lost, no acknowledged delete undone, on every node.
    for (i, s) in c.nodes.iter().enumerate() {
        let deadline = Instant::now() + WAIT;
        for (id, want) in live
            .iter()
            .map(|c| (&c.id, 200u16))
            .chain(deleted.iter().map(|d| (d, 404u16)))
        {
            loop {
                let got = s
                    .try_request("GET", &format!("/channels/{id}"), None, WAIT)
                    .await
                    .map(|r| r.status);
                if got == Ok(want) {
                    break;
                }
                if Instant::now() > deadline {
                    st.borrow_mut().violation(format!(
                        "[1 lost channel] GET /channels/{id} on node {i}: {got:?}, expected {want}"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // (2) Every live channel connectable on every node within the bound after healing.
    if let Err(e) = connect_all(&st, &live, &ports, healed, healed + connect_bound(), 8).await {
        st.borrow_mut().violation(format!(
            "[2 connect] after healing, not connectable within {:?}: {e}",
            connect_bound()
        ));
    }

    // Every subscriber receives again (what its publisher sends after healing).
    let marks: Vec<u64> = st.borrow().pairs.iter().map(|p| p.sent).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let behind: Vec<String> = {
            let s = st.borrow();
            (0..PAIRS)
                .filter(|k| s.pairs[*k].last.unwrap_or(0) <= marks[*k])
                .map(|k| {
                    format!(
                        "pair {k}: last seq {:?}, sent {} at the mark",
                        s.pairs[k].last, marks[k]
                    )
                })
                .collect()
        };
        if behind.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            st.borrow_mut().violation(format!(
                "[liveness] subscribers receive nothing new 10 s after healing: {}",
                behind.join("; ")
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    st.borrow_mut().stop_messaging = true;
    for t in tasks {
        let _ = t.await;
    }

    // (3) is checked as messages arrive; (4) every gap near a fault.
    let mut losses = 0u64;
    let mut gaps = 0usize;
    {
        let mut s = st.borrow_mut();
        let mut late = Vec::new();
        for (k, p) in s.pairs.iter().enumerate() {
            for g in &p.gaps {
                gaps += 1;
                losses += g.next - g.after - 1;
                let line = format!(
                    "pair {k}: seq {}..{} missing ({} messages) between {} and {}",
                    g.after + 1,
                    g.next - 1,
                    g.next - g.after - 1,
                    s.t(g.from),
                    s.t(g.to)
                );
                if let Some(f) = s.near(None, g.from, g.to) {
                    eprintln!("gap: {line} (during the {f})");
                } else {
                    late.push(format!("[4 gap] gap with no fault nearby: {line}"));
                }
            }
        }
        for l in late {
            s.violation(l);
        }
    }

    let failovers = metric_sum(&c, "wrs_cluster_failovers_total").await;
    let removals = metric_sum(&c, "wrs_cluster_removals_total").await;
    let rejoins = metric_sum(&c, "wrs_cluster_rejoins_total").await;
    let relay_lost = metric_sum(&c, "wrs_relay_records_lost_total").await;
    let dropped = metric_sum(&c, "wrs_messages_dropped_total").await;
    let s = st.borrow();
    let sent: u64 = s.pairs.iter().map(|p| p.sent).sum();
    let received: u64 = s.pairs.iter().map(|p| p.received).sum();
    let reconnects: u32 = s
        .pairs
        .iter()
        .map(|p| p.pub_reconnects + p.sub_reconnects)
        .sum();
    eprintln!(
        "chaos: seed={seed} faults={} (kill={kills} of which restarted_on_their_data_dir={kept_dirs}, stop={stops}) creates_ok={} creates_failed={} {:?} deletes_ok={} deletes_failed={} {:?} live_channels={} messages_sent={sent} received={received} gaps={gaps} losses={losses} reconnects={reconnects} closes_during_faults={} failovers={failovers} removals={removals} rejoins={rejoins} relay_records_lost={relay_lost} messages_dropped={dropped} failover_median/max={} slower_than_{}ms={slow_failovers} violations={} elapsed={:?}",
        kills + stops,
        s.creates_ok,
        s.creates_failed.values().sum::<u32>(),
        s.creates_failed,
        s.deletes_ok,
        s.deletes_failed.values().sum::<u32>(),
        s.deletes_failed,
        live.len(),
        s.expected_closes,
        median_max(&failover_times),
        connect_bound().as_millis(),
        s.violations.len(),
        t0.elapsed(),
    );
    if !s.violations.is_empty() {
        for (i, n) in c.nodes.iter().enumerate() {
            save_log(seed, &format!("node{i}-final.log"), n);
        }
        eprintln!("chaos: the nodes' logs are in {}", log_dir(seed).display());
        panic!(
            "seed {seed}: {} invariant violations:\n{}",
            s.violations.len(),
            s.violations.join("\n")
        );
    }
    assert!(
        s.creates_ok > 0,
        "seed {seed}: not a single channel was created"
    );
    assert!(received > 0, "seed {seed}: no message was received");
    let _ = std::fs::remove_dir_all(log_dir(seed));
}
