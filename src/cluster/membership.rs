//! Membership: find or start a cluster at boot (`WRS_JOIN`, DNS names expand to all their
//! addresses), join the cluster of a member given by its API address, and leave on shutdown.
//! Exactly one node of a `WRS_JOIN` list may start a cluster, so simultaneous starts form one.

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use actix::Addr;
use serde::Deserialize;

use super::node::{Bootstrap, GetView, RaftNode, RemoveMember, ResetToJoin};
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

/// What a member's `GET /cluster` says: (its node id, the leader's peer address if any).
async fn probe(api: &str, access: &ApiAccess) -> Result<(u64, Option<String>), String> {
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
    let leader_peer = body.data.leader_peer().map(str::to_owned);
    Ok((body.data.id, leader_peer))
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
            if view.leader.is_some() && view.nodes.iter().any(|(m, _)| m.id == me) {
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
    let (id, leader_peer) = probe(api, access).await?;
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

/// At start: join an existing cluster from `WRS_JOIN`, or start one if this node is the
/// designated first node (the smallest address of the list, this node included).
pub async fn discover(
    join: Vec<String>,
    access: ApiAccess,
    me: Member,
    own_addrs: BTreeSet<String>,
    node: Addr<RaftNode>,
) {
    if join.is_empty() {
        node.do_send(Bootstrap);
        return;
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut own_addrs = own_addrs;
    loop {
        attempt += 1;
        let listed = resolve(&join);
        let others: Vec<&String> = listed.iter().filter(|a| !own_addrs.contains(*a)).collect();
        let mut reachable: BTreeSet<String> = own_addrs.clone();
        for addr in &others {
            match probe(addr, &access).await {
                Ok((id, _)) if id == me.id => {
                    // This address is this node under another name (e.g. its pod IP).
                    own_addrs.insert((*addr).clone());
                    reachable.insert((*addr).clone());
                }
                Ok((_, Some(leader_peer))) => {
                    let _ = node.send(ResetToJoin).await;
                    match request_join(&leader_peer, &me, access.secret.as_deref()).await {
                        Ok(())
                            if wait_until_member(&node, me.id, Duration::from_secs(10)).await =>
                        {
                            log::info!("cluster: joined through {addr}");
                            return;
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
        if me_first || fallback {
            if fallback {
                log::warn!(
                    "cluster: the designated first node is unreachable; starting the cluster here"
                );
            }
            node.do_send(Bootstrap);
            return;
        }
        if attempt == 1 || attempt.is_multiple_of(20) {
            log::info!("cluster: waiting for a cluster among {join:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(300 + u64::from(attempt % 5) * 50)).await;
    }
}

/// On shutdown: leave the cluster if others remain, so they need not wait for this node.
pub async fn leave(node: &Addr<RaftNode>, me: u64, within: Duration) {
    let Ok(view) = node.send(GetView).await else {
        return;
    };
    if view.nodes.len() <= 1 || view.leader.is_none() {
        return;
    }
    match actix_rt::time::timeout(within, node.send(RemoveMember(me))).await {
        Ok(Ok(Ok(()))) => log::info!("cluster: left the cluster"),
        _ => log::warn!("cluster: could not leave the cluster cleanly"),
    }
}
