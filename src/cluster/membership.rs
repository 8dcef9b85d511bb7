//! Membership: find or start a cluster at boot (`WRS_JOIN`, DNS names expand to all their
//! addresses), join the cluster of a member given by its API address, leave on shutdown, and
//! notice when this node was removed while it could not hear (`watch`) — then rejoin as a new
//! member, with no operator. Exactly one node of a `WRS_JOIN` list may start a cluster, so
//! simultaneous starts form one; a node that rejoins never starts one.

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use serde::Deserialize;

use super::node::{Bootstrap, GetView, RaftNode, Rejoin, RemoveMember, ResetToJoin};
use super::peer::client::{self, RequestError};
use super::peer::proof;
use crate::model::ClusterBody;
use crate::model::Member;

/// How long the designated first node may be unreachable before the smallest reachable
/// address starts the cluster instead.
const DESIGNATED_GRACE: Duration = Duration::from_secs(20);

/// Resolves `host:port` entries to `ip:port` strings (a DNS name stands for all its addresses).
pub fn resolve(entries: &[String]) -> BTreeSet<String> {
    entries
        .iter()
        .flat_map(|e| match e.to_socket_addrs() {
            Ok(addrs) => addrs.map(|a| a.to_string()).collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        })
        .collect()
}

/// How this node reaches other members' public API: scheme, and the API token when the API
/// is protected (every node of a cluster shares the configuration).
#[derive(Debug, Clone)]
pub struct ApiAccess {
    pub scheme: String,
    pub token: Option<String>,
    /// `WRS_CLUSTER_SECRET`: with it, an address must prove it holds the secret before it is
    /// sent the API token or anything else.
    pub secret: Option<String>,
}

/// What a member's `GET /cluster` says.
async fn probe(api: &str, access: &ApiAccess) -> Result<ClusterBody, String> {
    let client = insecure_client();
    let url = format!("{}://{api}/cluster", access.scheme);
    let get = |token: Option<&str>, challenge: Option<&str>| {
        let mut req = client.get(&url);
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        if let Some(c) = challenge {
            req = req.insert_header((proof::CHALLENGE_HEADER, c));
        }
        req.send()
    };
    let mut res = match &access.secret {
        // No secret: a loopback-only cluster (config refuses other hosts), nothing to prove.
        None => get(access.token.as_deref(), None)
            .await
            .map_err(|e| format!("{api}: {e}"))?,
        Some(secret) => {
            // First without the token: only an address that proves it holds the cluster secret
            // is sent the token (or, later, a join request).
            let challenge = proof::challenge();
            let proven = |res: &awc::ClientResponse<_>| {
                res.headers()
                    .get(proof::ANSWER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| proof::check_answer(secret, &challenge, api, a))
            };
            let first = get(None, Some(&challenge))
                .await
                .map_err(|e| format!("{api}: {e}"))?;
            if !proven(&first) {
                return Err(format!(
                    "{api} did not prove it holds WRS_CLUSTER_SECRET (not a wrs node of this \
                     cluster); nothing else was sent to it"
                ));
            }
            match (&access.token, first.status().as_u16()) {
                (Some(token), 401) => get(Some(token), Some(&challenge))
                    .await
                    .map_err(|e| format!("{api}: {e}"))?,
                _ => first,
            }
        }
    };
    if !res.status().is_success() {
        return Err(format!("{api}: GET /cluster answered {}", res.status()));
    }
    let body: Envelope = res
        .json()
        .limit(1 << 20)
        .await
        .map_err(|e| format!("{api}: not a wrs node ({e})"))?;
    Ok(body.data)
}

/// `GET /cluster`'s body.
#[derive(Deserialize)]
struct Envelope {
    data: ClusterBody,
}

/// Asks the member whose peer port is `peer` to add `me`; follows redirects to the leader.
pub async fn request_join(peer: &str, me: &Member, secret: Option<&str>) -> Result<(), String> {
    let mut target = peer.to_owned();
    for _ in 0..3 {
        let answer: Result<serde_json::Value, _> =
            client::post(&target, "/join", secret, me, Duration::from_secs(5)).await;
        match answer {
            Ok(_) => return Ok(()),
            Err(RequestError::Refused(_, e)) if e.error == "not_leader" => match e.leader {
                Some(leader) => target = leader,
                None => return Err(format!("{target}: no leader known")),
            },
            Err(e) => return Err(format!("{target}: {e}")),
        }
    }
    Err("too many leader redirects".into())
}

/// Intra-cluster discovery talks to peers' public API, which may use a self-signed cert.
fn insecure_client() -> awc::Client {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    match SslConnector::builder(SslMethod::tls()) {
        Ok(mut ssl) => {
            ssl.set_verify(SslVerifyMode::NONE);
            awc::Client::builder()
                .connector(awc::Connector::new().openssl(ssl.build()))
                .timeout(Duration::from_secs(3))
                .finish()
        }
        Err(_) => awc::Client::builder()
            .timeout(Duration::from_secs(3))
            .finish(),
    }
}

/// Waits until this node has applied the cluster's state and sees a leader.
async fn wait_until_member(node: &Addr<RaftNode>, me: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(view) = node.send(GetView).await {
            if view.leader.is_some() && view.nodes.iter().any(|n| n.member.id == me) {
                return true;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Joins the cluster of the member whose API is at `api`. The node must be alone and empty;
/// on failure it starts its own cluster again.
pub async fn join_via(
    api: &str,
    access: &ApiAccess,
    me: &Member,
    node: &Addr<RaftNode>,
) -> Result<(), String> {
    let body = probe(api, access).await?;
    let (id, leader_peer) = (body.id, body.leader_peer().map(str::to_owned));
    if id == me.id {
        return Err(format!("{api} is this node"));
    }
    let leader_peer = leader_peer.ok_or_else(|| format!("{api} has no leader right now"))?;
    let _ = node.send(ResetToJoin).await;
    let result = async {
        request_join(&leader_peer, me, access.secret.as_deref()).await?;
        if wait_until_member(node, me.id, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err("added, but the cluster's state did not arrive within 10 s".to_string())
        }
    }
    .await;
    if result.is_err() {
        node.do_send(Bootstrap);
    }
    result
}

/// Where and how this node finds its cluster: `WRS_JOIN`, the access to other members' API,
/// and the addresses that are this node itself.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub join: Vec<String>,
    pub access: ApiAccess,
    pub own_addrs: BTreeSet<String>,
    /// `WRS_DATA_DIR`, if set: its cluster must be the one behind `WRS_JOIN`.
    pub data_dir: Option<String>,
}

/// A node on a data directory must not take up another cluster (nor rejoin one, which would
/// reset the directory): the first `WRS_JOIN` address whose node has a leader and another
/// cluster identity than `mine` makes this an error naming the directory.
pub async fn check_own_cluster(d: &Discovery, mine: u64) -> Result<(), String> {
    let Some(dir) = &d.data_dir else {
        return Ok(());
    };
    if mine == 0 {
        return Ok(());
    }
    for addr in resolve(&d.join).difference(&d.own_addrs) {
        let Ok(body) = probe(addr, &d.access).await else {
            continue;
        };
        if body.leader.is_some() && body.cluster != 0 && body.cluster != mine {
            return Err(format!(
                "WRS_DATA_DIR {dir}: this directory belongs to cluster {mine}, but {addr} (from \
                 WRS_JOIN) is a node of cluster {}; refusing to start. Start on an empty \
                 directory to join that cluster.",
                body.cluster
            ));
        }
    }
    Ok(())
}

/// At start: join an existing cluster from `WRS_JOIN`, or start one if this node is the
/// designated first node (the smallest address of the list, this node included). Returns the
/// addresses found to be this node. With `may_bootstrap` false (a removed node rejoining) it
/// only ever joins: a second cluster must never grow out of a node that lost its seat.
pub async fn discover(
    d: &Discovery,
    me: Member,
    node: &Addr<RaftNode>,
    may_bootstrap: bool,
) -> BTreeSet<String> {
    let (join, access) = (&d.join, &d.access);
    if join.is_empty() {
        node.do_send(Bootstrap);
        return d.own_addrs.clone();
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut own_addrs = d.own_addrs.clone();
    loop {
        attempt += 1;
        let listed = resolve(join);
        let others: Vec<&String> = listed.iter().filter(|a| !own_addrs.contains(*a)).collect();
        let mut reachable: BTreeSet<String> = own_addrs.clone();
        // A cluster with a leader answered: join it, whatever the join just answered (a
        // restarted node's first try is refused while its old id is retired). Starting a
        // cluster now would split the service in two.
        let mut saw_leader = false;
        for addr in &others {
            let answer = probe(addr, access)
                .await
                .map(|b| (b.id, b.leader_peer().map(str::to_owned)));
            match answer {
                Ok((id, _)) if id == me.id => {
                    // This address is this node under another name (e.g. its pod IP).
                    own_addrs.insert((*addr).clone());
                    reachable.insert((*addr).clone());
                }
                Ok((_, Some(leader_peer))) => {
                    saw_leader = true;
                    if may_bootstrap {
                        let _ = node.send(ResetToJoin).await;
                    }
                    match request_join(&leader_peer, &me, access.secret.as_deref()).await {
                        Ok(()) if wait_until_member(node, me.id, Duration::from_secs(10)).await => {
                            log::info!("cluster: joined through {addr}");
                            return own_addrs;
                        }
                        Ok(()) => log::warn!("cluster: join through {addr} did not complete"),
                        Err(e) => log::info!("cluster: join through {addr} failed: {e}"),
                    }
                }
                Ok((_, None)) => {
                    reachable.insert((*addr).clone());
                }
                Err(e) => log::debug!("cluster: {e}"),
            }
        }
        let designated = listed.iter().chain(own_addrs.iter()).min();
        let first_reachable = reachable.iter().min();
        let me_first = designated.is_some_and(|d| own_addrs.contains(d));
        let fallback = started.elapsed() > DESIGNATED_GRACE
            && first_reachable.is_some_and(|d| own_addrs.contains(d))
            && designated.is_some_and(|d| !reachable.contains(d));
        if may_bootstrap && !saw_leader && (me_first || fallback) {
            if fallback {
                log::warn!(
                    "cluster: the designated first node is unreachable; starting the cluster here"
                );
            }
            node.do_send(Bootstrap);
            return own_addrs;
        }
        if attempt == 1 || attempt.is_multiple_of(20) {
            log::info!("cluster: waiting for a cluster among {join:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(300 + u64::from(attempt % 5) * 50)).await;
    }
}

/// How often `watch` looks at this node's view.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Runs for the node's life (with `WRS_JOIN` set): when this node applied its own removal, or
/// has heard from no leader for `down_after` and the cluster's leader — asked through
/// `WRS_JOIN` — no longer lists it, it takes a new id and joins again. That is how a node that
/// was stopped or cut off past `WRS_NODE_REMOVE_AFTER` comes back by itself.
///
/// It ends when `leaving` is set: a node shutting down removes itself, and must not take that
/// for a reason to join again.
///
/// An error: the cluster behind `WRS_JOIN` is not this data directory's (the node must stop).
pub async fn watch(
    d: Discovery,
    node: Addr<RaftNode>,
    down_after: Duration,
    leaving: Arc<AtomicBool>,
) -> Result<(), String> {
    if d.join.is_empty() {
        return Ok(());
    }
    let mut d = d;
    let mut lonely_since: Option<Instant> = None;
    loop {
        actix_rt::time::sleep(WATCH_EVERY).await;
        if leaving.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(view) = node.send(GetView).await else {
            return Ok(());
        };
        let removed = if view.removed {
            true
        } else if has_fresh_leader(&view, down_after) {
            lonely_since = None;
            false
        } else {
            let since = *lonely_since.get_or_insert_with(Instant::now);
            since.elapsed() >= down_after && !counted_by_leader(&d, view.id).await
        };
        if removed && !leaving.load(Ordering::Relaxed) {
            // Rejoining resets the data directory: only ever into this directory's cluster.
            check_own_cluster(&d, view.cluster).await?;
            let me = match node.send(Rejoin).await {
                Ok(me) => me,
                Err(_) => return Ok(()),
            };
            d.own_addrs = discover(&d, me, &node, false).await;
            lonely_since = None;
        }
    }
}

/// Whether this node hears from a leader (itself, or one it heard from within `down_after`).
fn has_fresh_leader(view: &super::node::ClusterView, down_after: Duration) -> bool {
    let Some(leader) = view.leader else {
        return false;
    };
    leader == view.id
        || view.nodes.iter().any(|n| {
            n.member.id == leader
                && n.heard_ago_ms
                    .is_some_and(|ms| u128::from(ms) < down_after.as_millis())
        })
}

/// Asks the `WRS_JOIN` addresses for the cluster's leader and whether it still lists `me`.
/// True (keep waiting) unless a leader answered and does not list this node.
async fn counted_by_leader(d: &Discovery, me: u64) -> bool {
    for addr in resolve(&d.join).difference(&d.own_addrs) {
        let Ok(body) = probe(addr, &d.access).await else {
            continue;
        };
        let Some(leader) = body.leader else { continue };
        if body.id == me {
            continue;
        }
        // The leader's own list is the newest; fall back to this member's.
        let leader_api = body
            .nodes
            .iter()
            .find(|n| n.id == leader)
            .map(|n| n.address.clone());
        let authority = match leader_api {
            Some(api) if api != *addr => probe(&api, &d.access).await.unwrap_or(body),
            _ => body,
        };
        if authority.leader.is_none() {
            continue;
        }
        let listed = authority.nodes.iter().any(|n| n.id == me);
        if !listed {
            log::warn!(
                "cluster: the leader (node {}) no longer lists this node {me}: it was removed",
                authority.leader.unwrap_or(leader)
            );
        }
        return listed;
    }
    true
}

/// On shutdown: leave the cluster if others remain, so they need not wait for this node.
pub async fn leave(node: &Addr<RaftNode>, within: Duration) {
    let Ok(view) = node.send(GetView).await else {
        return;
    };
    if view.nodes.len() <= 1 || view.leader.is_none() {
        return;
    }
    match actix_rt::time::timeout(within, node.send(RemoveMember(view.id))).await {
        Ok(Ok(Ok(()))) => log::info!("cluster: left the cluster"),
        _ => log::warn!("cluster: could not leave the cluster cleanly"),
    }
}
