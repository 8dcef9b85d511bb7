//! Channel-affine connect URLs (`WRS_CONNECT_TO_OWNER`): with the setting on, the `url` a
//! create response hands out names the channel's owner node (rendezvous hash of the channel id
//! over the up voters, docs/cluster.md "One owner per channel"), and channel views carry the
//! same WebSocket URL without the token as `data.url`; clients that connect elsewhere still get
//! through the proxy path. With the setting off (the default), the `url` names the node that
//! answered, and views have no `url`.
//!
//! The owner is checked independently of the server's code: the test computes the rendezvous
//! hash itself over the ids `GET /cluster` lists, maps the winner to its address there, and a
//! client that follows the url is listed by presence (`GET /channels/{id}/clients`) as
//! connected to that node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

/// The owner of `channel` among `members`, by the rule docs/cluster.md states: the member with
/// the largest FNV-1a hash of the channel id's bytes followed by the member id (little endian).
/// Written here again, not imported, so a server that sends clients elsewhere fails.
fn rendezvous_owner(channel: &str, members: &BTreeSet<u64>) -> u64 {
    let score = |m: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in channel.bytes().chain(m.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    members
        .iter()
        .copied()
        .max_by_key(|m| score(*m))
        .expect("at least one member")
}

/// id → advertised address of the up voters (the members that own channels), from a settled
/// `GET /cluster` view.
fn voters(view: &Value) -> BTreeMap<u64, String> {
    view["nodes"]
        .as_array()
        .expect("GET /cluster: nodes")
        .iter()
        .filter(|n| n["state"] == "up" && n["role"] != "learner")
        .map(|n| {
            (
                n["id"].as_u64().expect("node id"),
                n["address"].as_str().expect("node address").to_owned(),
            )
        })
        .collect()
}

/// Splits `ws://host:port/path?query` into (`host:port`, `/path?query`).
fn split_ws_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("ws://")
        .unwrap_or_else(|| panic!("{url} does not start with ws://"));
    let slash = rest
        .find('/')
        .unwrap_or_else(|| panic!("{url} has no path"));
    (rest[..slash].to_owned(), rest[slash..].to_owned())
}

/// Presence at `node`: which node each connected client of `ch` is on (node ids, sorted).
async fn presence_nodes(node: &Server, ch: &Created) -> Result<Vec<u64>, String> {
    let r = node
        .try_request(
            "GET",
            &format!("/channels/{}/clients?token={}", ch.id, ch.token),
            None,
            WAIT,
        )
        .await?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    let mut nodes: Vec<u64> = r.json()["data"]
        .as_array()
        .ok_or("data is not an array")?
        .iter()
        .filter_map(|c| c["node"].as_u64())
        .collect();
    nodes.sort_unstable();
    Ok(nodes)
}

/// `from` sends numbered messages until `to` receives one (its join at the owner may still be
/// on its way), then both are drained; bounded by [`FORM`].
async fn until_delivered(from: &mut Ws, to: &mut Ws, what: &str) {
    let deadline = Instant::now() + FORM;
    let mut k = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: nothing arrived within {FORM:?}"
        );
        from.send_text(&format!("warm {k}")).await;
        k += 1;
        if let Some(m) = to.next_event(Duration::from_millis(500)).await {
            assert!(matches!(m, Msg::Text(_)), "{what}: got {m:?}");
            break;
        }
    }
    for ws in [from, to] {
        while let Some(m) = ws.next_event(QUIET).await {
            assert!(matches!(m, Msg::Text(_)), "{what}: while draining, {m:?}");
        }
    }
}

#[actix_rt::test]
async fn with_connect_to_owner_create_urls_name_each_channels_owner_and_clients_on_the_owner_and_another_node_exchange_messages(
) {
    let c = Cluster::start(3, &[("WRS_CONNECT_TO_OWNER", "true")]).await;
    let views = c.wait_formed().await;
    let members = voters(&views[0]);
    assert_eq!(members.len(), 3, "three up voters: {}", views[0]);
    let ids: BTreeSet<u64> = members.keys().copied().collect();
    let index_of = |id: u64| {
        views
            .iter()
            .position(|v| v["id"].as_u64() == Some(id))
            .expect("the owner is one of the nodes")
    };

    // Twelve channels, all created through node 0.
    let mut channels: Vec<(Created, u64)> = Vec::new();
    for _ in 0..12 {
        let ch = c.nodes[0].create(json!({"pattern": "pub-sub"})).await;
        let url = ch.body["url"].as_str().expect("url").to_owned();
        let (host_port, path) = split_ws_url(&url);
        assert_eq!(
            path,
            ch.body["connect"].as_str().expect("connect"),
            "the url is the connect path at some node"
        );
        let owner = rendezvous_owner(&ch.id, &ids);
        assert_eq!(
            host_port, members[&owner],
            "channel {}: the url names its owner {owner}",
            ch.id
        );
        // data.url is the same URL without the token.
        assert_eq!(
            format!(
                "{}?token={}",
                ch.body["data"]["url"].as_str().expect("data.url"),
                ch.token
            ),
            url,
            "data.url + ?token= is the url"
        );
        channels.push((ch, owner));
    }
    let owners: BTreeSet<u64> = channels.iter().map(|(_, o)| *o).collect();
    assert!(
        owners.len() >= 2,
        "12 channels spread over more than one owner (else this test proves little): {owners:?}"
    );

    // Every node's view of a channel, single and in the list, points at the same owner.
    let first = &channels[0].0;
    c.wait_visible(&first.id).await;
    for (i, s) in c.nodes.iter().enumerate() {
        for (ch, _) in &channels {
            let view = poll_until(&format!("channel {} on node {i}", ch.id), WAIT, || async {
                let r = s
                    .try_request("GET", &format!("/channels/{}", ch.id), None, WAIT)
                    .await?;
                match r.status {
                    200 => Ok(r.json()["data"].clone()),
                    st => Err(format!("{st} {}", r.text())),
                }
            })
            .await;
            assert_eq!(
                view["url"], ch.body["data"]["url"],
                "GET /channels/{} on node {i}",
                ch.id
            );
            assert!(
                !view.to_string().contains(&ch.token),
                "a view never shows the token"
            );
        }
        let list = s.get("/channels").await.json();
        for item in list["data"].as_array().expect("list data") {
            let ch = channels
                .iter()
                .find(|(ch, _)| item["id"] == ch.id.as_str())
                .map(|(ch, _)| ch);
            if let Some(ch) = ch {
                assert_eq!(
                    item["url"], ch.body["data"]["url"],
                    "GET /channels on node {i}"
                );
            }
        }
    }

    // A channel owned by node 1 or 2 (not the node that answered the create): one client
    // follows the url, one connects to a third node and is served through the proxy path.
    let (ch, owner) = channels
        .iter()
        .find(|(_, o)| index_of(*o) != 0)
        .expect("some channel is owned by another node than node 0");
    let owner_index = index_of(*owner);
    let other_index = (0..3)
        .find(|i| *i != owner_index)
        .expect("a node that is not the owner");
    let other_id = views[other_index]["id"].as_u64().expect("id");
    let url = ch.body["url"].as_str().expect("url");
    let mut at_owner = c.nodes[0]
        .try_ws_url(url, None)
        .await
        .unwrap_or_else(|e| panic!("the url {url} opens: {e}"));
    let mut elsewhere = c.nodes[other_index].connect(&ch.id, &ch.token).await;
    let mut want = vec![*owner, other_id];
    want.sort_unstable();
    poll_until(
        "presence lists one client on the owner and one on the other node",
        WAIT,
        || async {
            let got = presence_nodes(&c.nodes[other_index], ch).await?;
            if got == want {
                Ok(())
            } else {
                Err(format!("clients on nodes {got:?}, want {want:?}"))
            }
        },
    )
    .await;

    until_delivered(&mut at_owner, &mut elsewhere, "owner → other node").await;
    until_delivered(&mut elsewhere, &mut at_owner, "other node → owner").await;
    for i in 0..20 {
        at_owner.send_text(&format!("from the owner {i}")).await;
        elsewhere.send_text(&format!("via the proxy {i}")).await;
    }
    for i in 0..20 {
        assert_eq!(elsewhere.recv_text().await, format!("from the owner {i}"));
        assert_eq!(at_owner.recv_text().await, format!("via the proxy {i}"));
    }
    at_owner.expect_silence(QUIET).await;
    elsewhere.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn without_connect_to_owner_every_create_url_names_the_node_that_answered_and_views_have_no_url(
) {
    let c = Cluster::start(3, &[]).await;
    for _ in 0..6 {
        let ch = c.nodes[1].create(json!({"pattern": "pub-sub"})).await;
        assert_eq!(
            ch.body["url"],
            format!("ws://{}{}", c.nodes[1].address(), ch.connect_path()).as_str(),
            "the answering node's base, whoever owns the channel"
        );
        assert!(ch.body["data"].get("url").is_none(), "{}", ch.body);
        c.wait_visible(&ch.id).await;
        let view = c.nodes[2].channel(&ch.id).await;
        assert!(view.get("url").is_none(), "GET /channels/{}: {view}", ch.id);
    }
}

#[actix_rt::test]
async fn connect_to_owner_together_with_public_url_stops_the_node_naming_both() {
    let out = run_with_env(&[
        ("WRS_CONNECT_TO_OWNER", "true"),
        ("WRS_PUBLIC_URL", "wss://relay.example.org"),
    ])
    .await;
    assert_config_error(&out, "WRS_CONNECT_TO_OWNER");
    assert!(
        out.stderr.contains("WRS_PUBLIC_URL"),
        "stderr: {}",
        out.stderr
    );
}
