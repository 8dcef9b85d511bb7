//! TLS (2.x), API auth (3.x), browser-only mode (4.x), configuration and shutdown.

use std::time::{Duration, Instant};

use serde_json::json;
use wrs_test_support::*;

const SECRET: &str = "s3cr3t-t0ken";

async fn tls_server() -> (Server, tempfile::TempDir) {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_cert(certs.path());
    let s = Server::start(&[
        ("WRS_SSL", "true"),
        ("WRS_SSL_CERT_PATH", cert.to_str().unwrap()),
        ("WRS_SSL_KEY_PATH", key.to_str().unwrap()),
    ])
    .await;
    (s, certs)
}

// 2.1.1
#[actix_rt::test]
async fn t2_1_1_https_rest_with_self_signed_cert() {
    let (s, _certs) = tls_server().await;
    assert!(s.url("/").starts_with("https://"));
    let c = s.create(json!({"pattern": "echo"})).await;
    let list = s.get("/channels").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["data"][0]["id"], c.id.as_str());
    // Plain HTTP on the TLS port does not serve the API.
    let plain = http_client(false)
        .get(format!("http://127.0.0.1:{}/channels", s.api_port))
        .send()
        .await;
    if let Ok(r) = plain {
        assert_ne!(
            r.status().as_u16(),
            200,
            "plain HTTP answered on the TLS port"
        );
    }
}

// 2.2.1
#[actix_rt::test]
async fn t2_2_1_wss_with_self_signed_cert() {
    let (s, _certs) = tls_server().await;
    assert!(s.ws_url("/").starts_with("wss://"));
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    v[0].send_text("over tls").await;
    assert_eq!(v[1].recv_text().await, "over tls");
    v[1].send_binary(&[1, 2, 3]).await;
    assert_eq!(v[0].recv_binary().await, vec![1, 2, 3]);
}

async fn auth_server(resources: Option<&str>) -> Server {
    let mut env = vec![("WRS_AUTH", "true"), ("WRS_AUTH_TOKEN", SECRET)];
    if let Some(r) = resources {
        env.push(("WRS_AUTH_RESOURCES", r));
    }
    Server::start(&env).await
}

/// `POST /channels` (echo) with the API token as a bearer header.
async fn create_with_bearer(s: &Server) -> Resp {
    let bearer = format!("Bearer {SECRET}");
    s.request(
        "POST",
        "/channels",
        &[("authorization", &bearer)],
        Some(br#"{"pattern":"echo"}"#.to_vec()),
    )
    .await
}

// 3.1.1
#[actix_rt::test]
async fn t3_1_1_api_token_in_header_accepted() {
    let s = auth_server(None).await;
    let res = create_with_bearer(&s).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let bearer = format!("Bearer {SECRET}");
    let res = s
        .request("GET", "/channels", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
}

// 3.1.2
#[actix_rt::test]
async fn t3_1_2_api_token_in_query_accepted() {
    let s = auth_server(None).await;
    let res = s
        .post_json(
            &format!("/channels?auth={SECRET}"),
            &json!({"pattern": "echo"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(s.get(&format!("/channels?auth={SECRET}")).await.status, 200);
}

// 3.1.3
#[actix_rt::test]
async fn t3_1_3_api_token_in_body_accepted() {
    let s = auth_server(None).await;
    let res = s
        .post_json("/channels", &json!({"pattern": "echo", "auth": SECRET}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
}

// 3.1.4
#[actix_rt::test]
async fn t3_1_4_wrong_token_in_header_refused_401() {
    let s = auth_server(None).await;
    let res = s
        .request(
            "POST",
            "/channels",
            &[("authorization", "Bearer nope")],
            Some(br#"{"pattern":"echo"}"#.to_vec()),
        )
        .await;
    res.assert_error(401, "unauthorized");
    s.request(
        "GET",
        "/channels",
        &[("authorization", "Bearer nope")],
        None,
    )
    .await
    .assert_error(401, "unauthorized");
}

// 3.1.5
#[actix_rt::test]
async fn t3_1_5_wrong_token_in_query_refused_401() {
    let s = auth_server(None).await;
    s.post_json("/channels?auth=nope", &json!({"pattern": "echo"}))
        .await
        .assert_error(401, "unauthorized");
    // A prefix of the right token is wrong too.
    s.get(&format!("/channels?auth={}", &SECRET[..SECRET.len() - 1]))
        .await
        .assert_error(401, "unauthorized");
}

// 3.1.6
#[actix_rt::test]
async fn t3_1_6_wrong_token_in_body_refused_401() {
    let s = auth_server(None).await;
    s.post_json("/channels", &json!({"pattern": "echo", "auth": "nope"}))
        .await
        .assert_error(401, "unauthorized");
    s.post_json("/channels", &json!({"pattern": "echo"}))
        .await
        .assert_error(401, "unauthorized");
}

#[actix_rt::test]
async fn auth_protects_every_route_but_probes() {
    let s = auth_server(None).await;
    assert_eq!(s.get("/healthz").await.status, 200);
    assert_eq!(s.get("/readyz").await.status, 200);
    for (m, p) in [
        ("GET", "/channels"),
        ("GET", "/channels/x"),
        ("DELETE", "/channels/x"),
        ("DELETE", "/reset"),
        ("GET", "/channel"),
    ] {
        s.request(m, p, &[], None)
            .await
            .assert_error(401, "unauthorized");
    }
    // 401 comes before 404 for an unknown channel.
    s.raw_upgrade("/channels/none/connect?token=x")
        .await
        .assert_error(401, "unauthorized");
}

// 3.2.1
#[actix_rt::test]
async fn t3_2_1_websocket_connect_with_auth_token_in_query() {
    let s = auth_server(None).await;
    let res = s
        .post_json(
            &format!("/channels?auth={SECRET}"),
            &json!({"pattern": "echo"}),
        )
        .await;
    let c = Created::from_response(res);
    s.raw_upgrade(&c.connect_path())
        .await
        .assert_error(401, "unauthorized");
    s.raw_upgrade(&format!("{}&auth=nope", c.connect_path()))
        .await
        .assert_error(401, "unauthorized");
    let mut ws = s.ws(&format!("{}&auth={SECRET}", c.connect_path())).await;
    ws.send_text("authed").await;
    assert_eq!(ws.recv_text().await, "authed");
    // API auth does not replace the channel token.
    s.raw_upgrade(&format!(
        "/channels/{}/connect?token=bad&auth={SECRET}",
        c.id
    ))
    .await
    .assert_error(403, "invalid_token");
}

#[actix_rt::test]
async fn auth_resources_post_rule_protects_create_but_not_list() {
    let s = auth_server(Some("POST:/channels")).await;
    s.post_json("/channels", &json!({"pattern": "echo"}))
        .await
        .assert_error(401, "unauthorized");
    // The singular alias is matched as the canonical path: no bypass.
    s.post_json("/channel", &json!({"pattern": "echo"}))
        .await
        .assert_error(401, "unauthorized");
    let c = Created::from_response(
        s.post_json(
            &format!("/channels?auth={SECRET}"),
            &json!({"pattern": "echo"}),
        )
        .await,
    );
    let list = s.get("/channels").await;
    assert_eq!(
        list.status,
        200,
        "GET not covered by a POST rule: {}",
        list.text()
    );
    assert_eq!(s.get(&format!("/channels/{}", c.id)).await.status, 200);
    // The WebSocket route is a GET: open without the API token.
    let mut ws = s.connect(&c.id, &c.token).await;
    ws.send_text("x").await;
    assert_eq!(ws.recv_text().await, "x");
    assert_eq!(s.delete(&format!("/channels/{}", c.id)).await.status, 200);
}

#[actix_rt::test]
async fn auth_resources_rule_is_anchored_prefix_and_alias_cannot_bypass() {
    let s = auth_server(Some("DELETE:/channels *:/reset")).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    s.delete(&format!("/channels/{}", c.id))
        .await
        .assert_error(401, "unauthorized");
    s.delete(&format!("/channel/{}", c.id))
        .await
        .assert_error(401, "unauthorized");
    s.delete("/reset").await.assert_error(401, "unauthorized");
    // "/reset" anchored at the start: a rule for /reset does not cover /channels.
    assert_eq!(s.get("/channels").await.status, 200);
    let res = s
        .request(
            "DELETE",
            &format!("/channels/{}", c.id),
            &[("authorization", &format!("Bearer {SECRET}"))],
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[actix_rt::test]
async fn auth_resources_post_rule_protects_browser_only_create() {
    let s = Server::start(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", SECRET),
        ("WRS_AUTH_RESOURCES", "POST:/channels"),
        ("WRS_BROWSER_ONLY", "true"),
    ])
    .await;
    s.get("/channels/create?pattern=echo")
        .await
        .assert_error(401, "unauthorized");
    s.get("/channel/create?pattern=echo")
        .await
        .assert_error(401, "unauthorized");
    let res = s
        .get(&format!("/channels/create?pattern=echo&auth={SECRET}"))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
}

#[actix_rt::test]
async fn bad_auth_resource_regex_is_a_config_error() {
    // A bad regex in WRS_AUTH_RESOURCES must not start a server that protects nothing.
    let out = run_with_env(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", SECRET),
        ("WRS_AUTH_RESOURCES", "POST:/channels(["),
    ])
    .await;
    assert_config_error(&out, "WRS_AUTH_RESOURCES");
}

// 4.1.1
#[actix_rt::test]
async fn t4_1_1_browser_only_get_create() {
    let s = Server::start(&[("WRS_BROWSER_ONLY", "true")]).await;
    let res = s
        .get("/channels/create?pattern=pub-sub&clientLimit=3&timeout=60000")
        .await;
    let c = Created::from_response(res);
    assert_eq!(c.body["data"]["pattern"], "pub-sub");
    assert_eq!(c.body["data"]["clientLimit"], 3);
    assert_eq!(c.body["data"]["timeout"], 60000);
    // Lower-case spelling and the singular alias (the thesis' form).
    let c2 = Created::from_response(s.get("/channel/create?pattern=echo&clientlimit=2").await);
    assert_eq!(c2.body["data"]["clientLimit"], 2);
    let c3 = Created::from_response(
        s.get("/channels/create?pattern=pub-sub&includeSender=true")
            .await,
    );
    assert_eq!(c3.body["data"]["includeSender"], true);
    // Same validation as the POST body.
    s.get("/channels/create?pattern=bogus")
        .await
        .assert_error(400, "invalid_field");
    s.get("/channels/create?pattern=echo&clientLimit=1.5")
        .await
        .assert_error(400, "invalid_field");
    s.get("/channels/create?pattern=echo&timeout=-7")
        .await
        .assert_error(400, "invalid_field");
    let mut ws = s.connect(&c.id, &c.token).await;
    let mut ws2 = s.connect(&c.id, &c.token).await;
    s.wait_clients(&c.id, 2, WAIT).await;
    ws.send_text("browser").await;
    assert_eq!(ws2.recv_text().await, "browser");
}

// 4.1.2
#[actix_rt::test]
async fn t4_1_2_browser_only_get_delete() {
    let s = Server::start(&[("WRS_BROWSER_ONLY", "true")]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let mut ws = s.connect(&c.id, &c.token).await;
    let res = s.get(&format!("/channels/{}/delete", c.id)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.json()["message"].is_string());
    ws.expect_close(4000, WAIT).await;
    s.get(&format!("/channels/{}", c.id))
        .await
        .assert_error(404, "channel_not_found");
    s.get(&format!("/channels/{}/delete", c.id))
        .await
        .assert_error(404, "channel_not_found");
}

#[actix_rt::test]
async fn browser_only_routes_are_404_when_mode_is_off() {
    let s = Server::start(&[]).await;
    let res = s.get("/channels/create?pattern=echo").await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert_json_error("GET /channels/create", &res.json());
    assert_eq!(s.get("/channels").await.json()["data"], json!([]));
    let c = s.create(json!({"pattern": "echo"})).await;
    let res = s.get(&format!("/channels/{}/delete", c.id)).await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert_json_error("GET /channels/{id}/delete", &res.json());
    assert_eq!(s.get(&format!("/channels/{}", c.id)).await.status, 200);
}

#[actix_rt::test]
async fn invalid_configuration_exits_nonzero_naming_the_variable() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_cert(certs.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("WRS_API_PORT", "abc")], "WRS_API_PORT"),
        (vec![("WRS_API_PORT", "70000")], "WRS_API_PORT"),
        (vec![("WRS_AUTH", "maybe")], "WRS_AUTH"),
        (vec![("WRS_SSL", "yes please")], "WRS_SSL"),
        (vec![("WRS_BROWSER_ONLY", "2")], "WRS_BROWSER_ONLY"),
        (
            vec![("WRS_MAX_MESSAGE_SIZE", "big")],
            "WRS_MAX_MESSAGE_SIZE",
        ),
        (vec![("WRS_CLIENT_QUEUE", "-3")], "WRS_CLIENT_QUEUE"),
        (
            vec![("WRS_CLIENT_QUEUE_BYTES", "0")],
            "WRS_CLIENT_QUEUE_BYTES",
        ),
        // Joining another host without a secret would expose an open peer port.
        (vec![("WRS_JOIN", "10.9.8.7:8080")], "WRS_CLUSTER_SECRET"),
        (vec![("WRS_MAX_CHANNELS", "1.5")], "WRS_MAX_CHANNELS"),
        (vec![("WRS_PING_INTERVAL", "soon")], "WRS_PING_INTERVAL"),
        (
            vec![
                ("WRS_SSL", "true"),
                ("WRS_SSL_CERT_PATH", "/nonexistent/cert.pem"),
                ("WRS_SSL_KEY_PATH", key),
            ],
            "WRS_SSL_CERT_PATH",
        ),
        (
            vec![
                ("WRS_SSL", "true"),
                ("WRS_SSL_CERT_PATH", cert),
                ("WRS_SSL_KEY_PATH", "/nonexistent/key.pem"),
            ],
            "WRS_SSL_KEY_PATH",
        ),
        (
            vec![("WRS_SSL", "true"), ("WRS_SSL_KEY_PATH", key)],
            "WRS_SSL_CERT_PATH",
        ),
    ];
    let mut failures = Vec::new();
    for (env, var) in cases {
        let out = run_with_env(&env).await;
        let ok = out.code.is_some_and(|c| c != 0) && out.stderr.contains(var);
        if !ok {
            failures.push(format!(
                "{env:?}: expected non-zero exit naming {var}, got exit {:?}, stderr {:?}",
                out.code,
                out.stderr.chars().take(400).collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[actix_rt::test]
async fn sigterm_closes_clients_with_1001_and_exits() {
    let mut s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    let (id2, token2) = s.create_channel("echo").await;
    v.push(s.connect(&id2, &token2).await);
    let start = Instant::now();
    s.sigterm();
    for c in v.iter_mut() {
        c.expect_close(1001, WAIT).await;
    }
    let status = s
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("wrs did not exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    eprintln!("shutdown took {:?}", start.elapsed());
}

/// Spellings a router accepts for `path` (which starts with `/`): encoded letters in both
/// escape cases, `%2F` for inner slashes, repeated slashes, `/./`, `/x/../`, a trailing slash,
/// the singular alias.
fn spellings(path: &str) -> Vec<String> {
    let mut out = vec![path.to_owned()];
    let first = path.as_bytes()[1];
    out.push(format!("/%{first:02x}{}", &path[2..]));
    out.push(format!("/%{first:02X}{}", &path[2..]));
    let last = path.as_bytes()[path.len() - 1];
    out.push(format!("{}%{last:02x}", &path[..path.len() - 1]));
    if let Some(i) = path[1..].find('/') {
        out.push(format!("{}%2F{}", &path[..=i], &path[i + 2..]));
        out.push(format!("{}%2f{}", &path[..=i], &path[i + 2..]));
        out.push(format!("{}//{}", &path[..=i], &path[i + 2..]));
    }
    out.push(format!("/{path}"));
    out.push(format!("/.{path}"));
    out.push(format!("/x/..{path}"));
    out.push(format!("{path}/"));
    out.push(format!("{path}/."));
    if let Some(rest) = path.strip_prefix("/channels") {
        out.push(format!("/channel{rest}"));
        out.push(format!("/channe%6C{rest}"));
    }
    out
}

#[actix_rt::test]
async fn no_spelling_of_a_protected_route_reaches_its_handler_without_the_token() {
    let s = Server::start(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", SECRET),
        ("WRS_AUTH_RESOURCES", "POST:/channels DELETE:/ *:/cluster"),
    ])
    .await;
    let res = create_with_bearer(&s).await;
    let id = Created::from_response(res).id;
    let protected = [
        ("POST", "/channels".to_owned()),
        ("DELETE", format!("/channels/{id}")),
        ("DELETE", "/reset".to_owned()),
        ("GET", "/cluster".to_owned()),
        ("POST", "/cluster/join/127.0.0.1:1".to_owned()),
        ("DELETE", "/cluster/12345".to_owned()),
    ];
    let mut tried = 0;
    for (method, path) in &protected {
        for spelling in spellings(path) {
            let body = (*method == "POST").then(|| br#"{"pattern":"echo"}"#.to_vec());
            let res = s.request(method, &spelling, &[], body).await;
            tried += 1;
            assert!(
                [400, 401, 404, 405].contains(&res.status),
                "{method} {spelling} answered {} without the token: {}",
                res.status,
                res.text()
            );
        }
    }
    println!(
        "tried {tried} spellings of {} protected routes",
        protected.len()
    );
    // The channel is still there: no spelling of DELETE reached the handler.
    let res = s
        .request("GET", &format!("/channels/{id}"), &[], None)
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    // A path that cannot be normalised is a 400 with a JSON body.
    s.get("/channels/%zz")
        .await
        .assert_error(400, "invalid_path");
}
