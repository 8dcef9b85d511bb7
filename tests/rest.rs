//! REST API: the thesis' table-7 cases 1.1.1–1.2.8 and the JSON error contract.

use serde_json::{json, Value};
use wrs_test_support::*;

fn assert_html(res: &Resp) {
    assert_eq!(res.status, 200, "{}: {}", res.what, res.text());
    let ct = res.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/html"),
        "{}: content-type {ct:?}",
        res.what
    );
    let body = res.text().to_lowercase();
    assert!(
        body.contains("<html") || body.contains("<!doctype html"),
        "{}: not an HTML document: {}",
        res.what,
        &body[..body.len().min(300)]
    );
}

/// Every Channel object carries the documented fields with the right types.
fn assert_channel_shape(c: &Value) {
    for k in ["id", "pattern"] {
        assert!(c[k].is_string(), "channel.{k} must be a string: {c}");
    }
    for k in [
        "clientLimit",
        "timeout",
        "countdown",
        "clients",
        "createdAt",
    ] {
        assert!(c[k].is_i64(), "channel.{k} must be an integer: {c}");
    }
    assert!(
        c["includeSender"].is_boolean(),
        "channel.includeSender: {c}"
    );
    assert!(
        c.get("token").is_none(),
        "channel object shows a token: {c}"
    );
}

// 1.1.1
#[actix_rt::test]
async fn t1_1_1_server_starts_and_is_healthy() {
    let s = Server::start(&[]).await;
    let res = s.get("/healthz").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["status"], "ok");
    let res = s.get("/readyz").await;
    assert_eq!(res.status, 200, "readyz: {}", res.text());
}

// 1.1.2
#[actix_rt::test]
async fn t1_1_2_landing_page_is_html() {
    let s = Server::start(&[]).await;
    assert_html(&s.get("/").await);
}

// 1.1.3
#[actix_rt::test]
async fn t1_1_3_readme_is_html() {
    let s = Server::start(&[]).await;
    let res = s.get("/readme").await;
    assert_html(&res);
    assert!(
        res.text().to_lowercase().contains("<h1"),
        "README rendered without a heading"
    );
}

#[actix_rt::test]
async fn client_page_docs_and_openapi_are_served() {
    let s = Server::start(&[]).await;
    assert_html(&s.get("/client").await);
    assert_html(&s.get("/docs").await);
    let res = s.get("/openapi.json").await;
    assert_eq!(res.status, 200);
    let v = res.json();
    assert!(
        v["openapi"].as_str().is_some_and(|x| x.starts_with('3')),
        "openapi version: {}",
        v["openapi"]
    );
    assert!(v["paths"].is_object(), "openapi paths");
}

#[actix_rt::test]
async fn metrics_are_prometheus_text() {
    let s = Server::start(&[]).await;
    let res = s.get("/metrics").await;
    assert_eq!(res.status, 200);
    assert!(
        res.text().contains("# TYPE"),
        "not Prometheus text: {}",
        res.text()
    );
}

#[actix_rt::test]
async fn the_grafana_dashboard_queries_only_metrics_the_server_exposes() {
    let s = Server::start(&[]).await;
    // One request of each kind the dashboard counts, so labelled families have series.
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    ws.send_text("counted").await;
    assert_eq!(ws.recv_text().await, "counted");
    let exposed = s.get("/metrics").await.text();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/k8s/examples/grafana-dashboard.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("wrs_"))
            {
                let found = exposed.lines().any(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                });
                assert!(
                    found,
                    "panel {:?} queries {name}, which /metrics does not expose",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} metric references found");
}

// 1.1.4
#[actix_rt::test]
async fn t1_1_4_cluster_info_has_id_leader_term_nodes() {
    let s = Server::start(&[]).await;
    let res = s.get("/cluster").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let d = res.json()["data"].clone();
    // The contract leaves the id's JSON type open (raft ids are integers): string or integer.
    let is_id = |v: &serde_json::Value| v.is_string() || v.is_u64();
    let id = d["id"].clone();
    assert!(
        is_id(&id),
        "GET /cluster: data.id must be a string or integer: {d}"
    );
    assert!(
        d["leader"].is_null() || is_id(&d["leader"]),
        "leader must be a node id or null: {d}"
    );
    assert!(d["term"].is_u64(), "term: {d}");
    let nodes = d["nodes"].as_array().expect("nodes array");
    assert!(!nodes.is_empty(), "a node lists itself: {d}");
    for n in nodes {
        assert!(
            is_id(&n["id"]) && n["address"].is_string() && n["role"].is_string(),
            "node shape: {n}"
        );
    }
    if !d["leader"].is_null() {
        assert!(
            nodes.iter().any(|n| n["id"] == d["leader"]),
            "the leader is one of the nodes: {d}"
        );
    }
    let me = nodes
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("this node ({id}) is not in nodes: {d}"));
    assert_eq!(
        me["address"].as_str(),
        Some(format!("127.0.0.1:{}", s.api_port).as_str()),
        "address is WRS_DOMAIN:port"
    );
}

#[actix_rt::test]
async fn cluster_routes_answer_json_errors() {
    let s = Server::start(&[]).await;
    let res = s.delete("/cluster/123456789").await;
    assert!(
        res.status == 404 || res.status == 501,
        "DELETE /cluster/unknown: {} {}",
        res.status,
        res.text()
    );
    assert_json_error("DELETE /cluster/unknown", &res.json());
    // Nothing listens there: the join fails with a reason, and the node is unharmed.
    let dead = free_port();
    let res = s
        .request(
            "POST",
            &format!("/cluster/join/127.0.0.1:{dead}"),
            &[],
            None,
        )
        .await;
    assert!(
        res.status >= 400,
        "join to a dead address: {} {}",
        res.status,
        res.text()
    );
    assert_json_error("POST /cluster/join/dead", &res.json());
    assert_eq!(s.get("/cluster").await.status, 200);
    s.create(json!({"pattern": "echo"})).await;
}

// 1.2.1
#[actix_rt::test]
async fn t1_2_1_list_channels_is_empty_at_start() {
    let s = Server::start(&[]).await;
    let res = s.get("/channels").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["data"], json!([]));
}

// 1.2.2
#[actix_rt::test]
async fn t1_2_2_create_returns_201_location_token_and_data() {
    let s = Server::start(&[]).await;
    let res = s
        .post_json(
            "/channels",
            &json!({"pattern": "pub-sub", "clientLimit": 5, "timeout": 60000}),
        )
        .await;
    let c = Created::from_response(res);
    assert_eq!(
        c.location.as_deref(),
        Some(format!("/channels/{}", c.id).as_str()),
        "Location header"
    );
    assert!(
        c.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message: {}",
        c.body
    );
    assert!(
        c.token.len() >= 22,
        "token too short for 128 bits: {:?}",
        c.token
    );
    let d = &c.body["data"];
    assert_channel_shape(d);
    assert_eq!(d["pattern"], "pub-sub");
    assert_eq!(d["clientLimit"], 5);
    assert_eq!(d["timeout"], 60000);
    assert_eq!(d["clients"], 0);
    assert_eq!(d["includeSender"], false);
    let cd = d["countdown"].as_i64().unwrap();
    assert!((50_000..=60_000).contains(&cd), "countdown {cd}");
    assert_eq!(
        c.body["connect"].as_str(),
        Some(c.connect_path().as_str()),
        "connect path"
    );
}

#[actix_rt::test]
async fn create_applies_defaults() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let d = &c.body["data"];
    assert_eq!(d["clientLimit"], -1);
    assert_eq!(d["timeout"], 86_400_000);
    assert_eq!(d["includeSender"], false);
    let never = s.create(json!({"pattern": "echo", "timeout": -1})).await;
    assert_eq!(
        never.body["data"]["countdown"], -1,
        "no timeout -> countdown -1"
    );
}

#[actix_rt::test]
async fn tokens_and_ids_are_unique() {
    let s = Server::start(&[]).await;
    let mut tokens = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let c = s.create(json!({"pattern": "echo"})).await;
        assert!(tokens.insert(c.token.clone()), "token repeated");
        assert!(ids.insert(c.id.clone()), "id repeated");
    }
}

#[actix_rt::test]
async fn create_accepts_every_pattern_and_boundaries() {
    let s = Server::start(&[]).await;
    for p in ["echo", "pub-sub", "push-pull", "req-repl", "fan-in-out"] {
        let c = s.create(json!({"pattern": p})).await;
        assert_eq!(c.body["data"]["pattern"], p);
    }
    let max = 9_007_199_254_740_992_i64; // 2^53
    let c = s
        .create(json!({"pattern": "echo", "clientLimit": max, "timeout": max}))
        .await;
    assert_eq!(c.body["data"]["clientLimit"], max);
    assert_eq!(c.body["data"]["timeout"], max);
    let c = s
        .create(json!({"pattern": "echo", "clientLimit": 0, "timeout": -1}))
        .await;
    assert_eq!(c.body["data"]["clientLimit"], 0);
    let c = s
        .create(json!({"pattern": "pub-sub", "includeSender": true, "futureField": {"x": 1}}))
        .await;
    assert_eq!(c.body["data"]["includeSender"], true);
    // No content type at all (curl -d without -H) is parsed as JSON too.
    let res = s
        .request(
            "POST",
            "/channels",
            &[],
            Some(br#"{"pattern":"echo"}"#.to_vec()),
        )
        .await;
    assert_eq!(res.status, 201, "no content-type: {}", res.text());
}

// 1.2.3 / 1.2.4
#[actix_rt::test]
async fn t1_2_3_list_and_get_one_show_the_channel() {
    let s = Server::start(&[]).await;
    let c = s
        .create(json!({"pattern": "push-pull", "clientLimit": 3}))
        .await;
    let list = s.get("/channels").await;
    assert_eq!(list.status, 200);
    let arr = list.json()["data"].as_array().expect("data array").clone();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["id"], c.id.as_str());
    assert_channel_shape(&arr[0]);
    let one = s.get(&format!("/channels/{}", c.id)).await;
    assert_eq!(one.status, 200);
    let d = one.json()["data"].clone();
    assert_channel_shape(&d);
    assert_eq!(d["id"], c.id.as_str());
    assert_eq!(d["pattern"], "push-pull");
    assert_eq!(d["clientLimit"], 3);
}

#[actix_rt::test]
async fn token_appears_only_in_create_response() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    for path in ["/channels".to_string(), format!("/channels/{}", c.id)] {
        let res = s.get(&path).await;
        assert_eq!(res.status, 200);
        assert!(
            !res.text().contains(&c.token),
            "GET {path} leaks the token: {}",
            res.text()
        );
        assert!(
            !res.text().contains("\"token\""),
            "GET {path}: {}",
            res.text()
        );
    }
}

#[actix_rt::test]
async fn get_unknown_channel_is_404_json() {
    let s = Server::start(&[]).await;
    s.get("/channels/doesnotexist")
        .await
        .assert_error(404, "channel_not_found");
    s.delete("/channels/doesnotexist")
        .await
        .assert_error(404, "channel_not_found");
}

// 1.2.5 – 1.2.7
#[actix_rt::test]
async fn t1_2_5_delete_removes_the_channel_and_list_is_empty() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let res = s.delete(&format!("/channels/{}", c.id)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.json()["message"].is_string());
    s.get(&format!("/channels/{}", c.id))
        .await
        .assert_error(404, "channel_not_found");
    assert_eq!(s.get("/channels").await.json()["data"], json!([]));
    s.delete(&format!("/channels/{}", c.id))
        .await
        .assert_error(404, "channel_not_found");
}

#[actix_rt::test]
async fn delete_closes_connected_clients_with_4000() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut clients = s.connect_n(&id, &token, 2).await;
    assert_eq!(s.delete(&format!("/channels/{id}")).await.status, 200);
    for c in clients.iter_mut() {
        let reason = c.expect_close(4000, WAIT).await;
        assert!(!reason.is_empty(), "close 4000 without a reason text");
    }
}

#[actix_rt::test]
async fn reset_deletes_all_channels_and_closes_clients() {
    let s = Server::start(&[]).await;
    let a = s.create(json!({"pattern": "echo"})).await;
    s.create(json!({"pattern": "pub-sub"})).await;
    s.create(json!({"pattern": "req-repl"})).await;
    let mut ws = s.connect(&a.id, &a.token).await;
    let res = s.delete("/reset").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v = res.json();
    assert_eq!(v["deleted"], 3, "{v}");
    assert!(v["message"].is_string());
    assert_eq!(s.get("/channels").await.json()["data"], json!([]));
    ws.expect_close(4000, WAIT).await;
}

#[actix_rt::test]
async fn singular_channel_alias_works_for_every_route() {
    let s = Server::start(&[]).await;
    let res = s.post_json("/channel", &json!({"pattern": "echo"})).await;
    let c = Created::from_response(res);
    let list = s.get("/channel").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["data"].as_array().map(|a| a.len()), Some(1));
    let one = s.get(&format!("/channel/{}", c.id)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["data"]["id"], c.id.as_str());
    let mut ws = s
        .ws(&format!("/channel/{}/connect?token={}", c.id, c.token))
        .await;
    ws.send_text("via alias").await;
    assert_eq!(ws.recv_text().await, "via alias");
    let del = s.delete(&format!("/channel/{}", c.id)).await;
    assert_eq!(del.status, 200);
    s.get(&format!("/channel/{}", c.id))
        .await
        .assert_error(404, "channel_not_found");
}

/// Table-driven: every bad request is a 4xx with `{"message", "error"}`, and the server keeps
/// working afterwards.
#[actix_rt::test]
async fn bad_inputs_get_json_4xx_errors() {
    let s = Server::start(&[]).await;
    let two53p1 = "9007199254740993";
    // (body, expected status, expected error code, field the message must name)
    let bodies: Vec<(String, u16, &str, Option<&str>)> = vec![
        ("not json".into(), 400, "invalid_json", None),
        ("".into(), 400, "invalid_json", None),
        ("[1,2,3]".into(), 400, "invalid_json", None),
        ("\"echo\"".into(), 400, "invalid_json", None),
        ("{\"pattern\": \"echo\"".into(), 400, "invalid_json", None),
        ("{}".into(), 400, "invalid_field", Some("pattern")),
        (
            r#"{"pattern": "bogus"}"#.into(),
            400,
            "invalid_field",
            Some("pattern"),
        ),
        (
            r#"{"pattern": 5}"#.into(),
            400,
            "invalid_field",
            Some("pattern"),
        ),
        (
            r#"{"pattern": null}"#.into(),
            400,
            "invalid_field",
            Some("pattern"),
        ),
        (
            r#"{"pattern": "ECHO"}"#.into(),
            400,
            "invalid_field",
            Some("pattern"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": "5"}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": 5.0}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": 1.5}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": -2}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": null}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": true}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            format!(r#"{{"pattern": "echo", "clientLimit": {two53p1}}}"#),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "clientLimit": 1e3}"#.into(),
            400,
            "invalid_field",
            Some("clientLimit"),
        ),
        (
            r#"{"pattern": "echo", "timeout": "1000"}"#.into(),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            r#"{"pattern": "echo", "timeout": 5.0}"#.into(),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            r#"{"pattern": "echo", "timeout": 1.5}"#.into(),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            r#"{"pattern": "echo", "timeout": -5}"#.into(),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            r#"{"pattern": "echo", "timeout": -1.0}"#.into(),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            format!(r#"{{"pattern": "echo", "timeout": {two53p1}}}"#),
            400,
            "invalid_field",
            Some("timeout"),
        ),
        (
            r#"{"pattern": "pub-sub", "includeSender": "true"}"#.into(),
            400,
            "invalid_field",
            Some("includeSender"),
        ),
        (
            r#"{"pattern": "pub-sub", "includeSender": 1}"#.into(),
            400,
            "invalid_field",
            Some("includeSender"),
        ),
        (
            r#"{"pattern": "echo", "includeSender": true}"#.into(),
            400,
            "invalid_field",
            Some("includeSender"),
        ),
        (
            r#"{"pattern": "push-pull", "includeSender": true}"#.into(),
            400,
            "invalid_field",
            Some("includeSender"),
        ),
        (
            r#"{"pattern": "req-repl", "includeSender": true}"#.into(),
            400,
            "invalid_field",
            Some("includeSender"),
        ),
    ];
    let mut failures = Vec::new();
    for (body, status, code, field) in &bodies {
        let res = s.post_raw("/channels", body.as_bytes()).await;
        let ok_status = res.status == *status;
        let v: Option<Value> = serde_json::from_slice(&res.body).ok();
        let ok_shape = v.as_ref().is_some_and(|v| {
            v["message"].as_str().is_some_and(|m| !m.is_empty()) && v["error"].is_string()
        });
        let ok_code = v.as_ref().is_some_and(|v| v["error"] == *code);
        let ok_field = match field {
            Some(f) => v
                .as_ref()
                .and_then(|v| v["message"].as_str())
                .is_some_and(|m| m.contains(f)),
            None => true,
        };
        if !(ok_status && ok_shape && ok_code && ok_field) {
            failures.push(format!(
                "body {body:?}: expected {status} {code} naming {field:?}, got {} {}",
                res.status,
                res.text()
            ));
        }
    }
    // Too big a body.
    let huge = format!(
        r#"{{"pattern": "echo", "pad": "{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let res = s.post_raw("/channels", huge.as_bytes()).await;
    let v: Option<Value> = serde_json::from_slice(&res.body).ok();
    if res.status != 413 || !v.as_ref().is_some_and(|v| v["error"] == "body_too_large") {
        failures.push(format!(
            "100 KiB body: expected 413 body_too_large, got {} {}",
            res.status,
            res.text()
        ));
    }
    // Unknown routes and wrong methods.
    let routes: Vec<(&str, &str, u16, &str)> = vec![
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/channels/a/b/c", 404, "not_found"),
        ("POST", "/nope", 404, "not_found"),
        ("PUT", "/channels", 405, "method_not_allowed"),
        ("DELETE", "/channels", 405, "method_not_allowed"),
        ("PATCH", "/channels/abc", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/reset", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in &routes {
        let res = s.request(method, path, &[], None).await;
        let v: Option<Value> = serde_json::from_slice(&res.body).ok();
        let ok = res.status == *status
            && v.as_ref().is_some_and(|v| {
                v["message"].as_str().is_some_and(|m| !m.is_empty()) && v["error"] == *code
            });
        if !ok {
            failures.push(format!(
                "{method} {path}: expected {status} {code}, got {} {}",
                res.status,
                res.text()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad inputs mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Still serving.
    let c = s.create(json!({"pattern": "echo"})).await;
    let mut ws = s.connect(&c.id, &c.token).await;
    ws.send_text("still alive").await;
    assert_eq!(ws.recv_text().await, "still alive");
    assert_eq!(
        s.get("/channels").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_rt::test]
async fn max_body_is_configurable() {
    let s = Server::start(&[("WRS_MAX_BODY", "100")]).await;
    let body = format!(r#"{{"pattern": "echo", "pad": "{}"}}"#, "x".repeat(200));
    s.post_raw("/channels", body.as_bytes())
        .await
        .assert_error(413, "body_too_large");
    let ok = s.post_raw("/channels", br#"{"pattern":"echo"}"#).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
}
