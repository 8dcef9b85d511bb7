//! Test clusters: the shared secret and fast Raft timing, several `wrs` processes joined by
//! `WRS_JOIN`, views of `GET /cluster` and the checks that they describe one cluster.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::*;

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

impl Server {
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
        let mut res = request_with(&self.client, &self.url(path), method, body, limit).await?;
        res.what = format!("{method} {path} on {}", self.address());
        Ok(res)
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

/// A request through `client` to a full `url` that may fail (connection refused, timeout)
/// without panicking; for load generators that address nodes by port, not by `Server`.
pub async fn request_with(
    client: &awc::Client,
    url: &str,
    method: &str,
    body: Option<&Value>,
    limit: Duration,
) -> Result<Resp, String> {
    let m = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let req = client.request(m, url).timeout(limit);
    let fut = async {
        let res = match body {
            Some(b) => req
                .insert_header(("content-type", "application/json"))
                .send_body(b.to_string())
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?,
            None => req
                .send()
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?,
        };
        read_response(res, format!("{method} {url}")).await
    };
    match tokio::time::timeout(limit + Duration::from_secs(1), fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{method} {url}: no answer within {limit:?}")),
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
    /// With [`Cluster::start_durable`]: each node's `WRS_DATA_DIR` is `<root>/<api port>`,
    /// kept across restarts.
    pub data_root: Option<std::sync::Arc<tempfile::TempDir>>,
}

/// The environment of the node on `api` in `c`'s cluster: `env`, `WRS_JOIN`, and its own
/// data directory when the cluster is durable.
fn node_env(
    env: &[(String, String)],
    join: String,
    root: Option<&tempfile::TempDir>,
    api: u16,
) -> Vec<(String, String)> {
    let mut all = env.to_vec();
    all.push(("WRS_JOIN".into(), join));
    if let Some(root) = root {
        let dir = root.path().join(api.to_string());
        all.push(("WRS_DATA_DIR".into(), dir.display().to_string()));
    }
    all
}

impl Cluster {
    /// Polls until every node knows the channel `id` (its creation is committed on the node
    /// that answered; the others apply it a moment later).
    pub async fn wait_visible(&self, id: &str) {
        for (i, s) in self.nodes.iter().enumerate() {
            let what = format!("channel {id} visible on node {i}");
            poll_until(&what, WAIT, || async {
                let r = s
                    .try_request("GET", &format!("/channels/{id}"), None, WAIT)
                    .await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("{} {}", r.status, r.text()))
                }
            })
            .await;
        }
    }

    /// Start `n` nodes at the same moment (spawned back to back in ascending address order) and
    /// wait until they form one cluster with a leader and no learners.
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        Cluster::start_in_order(n, extra, false).await
    }

    /// As [`Cluster::start`]; `reverse` spawns the nodes in descending address order, so the
    /// node that starts the cluster (the smallest address) is spawned last.
    pub async fn start_in_order(n: usize, extra: &[(&str, &str)], reverse: bool) -> Cluster {
        Cluster::start_with(n, extra, reverse, None).await
    }

    /// As [`Cluster::start`], every node with a data directory of its own (`WRS_DATA_DIR`)
    /// that [`Cluster::restart`] keeps.
    pub async fn start_durable(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir for the data directories");
        Cluster::start_with(n, extra, false, Some(std::sync::Arc::new(root))).await
    }

    /// The data directory of node `i` (durable clusters only).
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        let root = self.data_root.as_ref().expect("a durable cluster");
        root.path().join(self.nodes[i].api_port.to_string())
    }

    async fn start_with(
        n: usize,
        extra: &[(&str, &str)],
        reverse: bool,
        data_root: Option<std::sync::Arc<tempfile::TempDir>>,
    ) -> Cluster {
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
            let mut order: Vec<usize> = (0..n).collect();
            if reverse {
                order.reverse();
            }
            let mut spawned: Vec<Option<Server>> = (0..n).map(|_| None).collect();
            for &i in &order {
                let e = node_env(&env, join.clone(), data_root.as_deref(), pairs[i].0);
                spawned[i] = Some(Server::spawn_on(pairs[i].0, pairs[i].1, &e));
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
                    let c = Cluster {
                        nodes,
                        env,
                        data_root,
                    };
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
            let join = format!("{},127.0.0.1:{}", self.join_list(), ports[0]);
            let env = node_env(&self.env, join, self.data_root.as_deref(), ports[0]);
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
    /// `WRS_JOIN` = every node's address (and its data directory, in a durable cluster). The
    /// old process's log is dropped with it.
    pub async fn restart(&mut self, i: usize) {
        let s = self.spawn_again(i);
        self.finish_restart(i, s).await;
    }

    /// Kills node `i` if it runs and spawns it again on its ports, without waiting.
    pub fn spawn_again(&mut self, i: usize) -> Server {
        let (api, node) = (self.nodes[i].api_port, self.nodes[i].node_port);
        self.nodes[i].kill_hard();
        let env = node_env(&self.env, self.join_list(), self.data_root.as_deref(), api);
        Server::spawn_on(api, node, &env)
    }

    async fn finish_restart(&mut self, i: usize, mut s: Server) {
        let up = s.wait_up(FORM).await;
        if let Err(e) = up {
            let logs = s.logs();
            s.kill_hard();
            panic!("node {i} did not start again on its ports: {e}\n{logs}");
        }
        self.nodes[i] = s;
    }
}
