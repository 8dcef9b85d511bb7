//! Browser apps on other origins and the thesis' configuration as written, over real sockets:
//! CORS preflights and headers (errors included), an origin off the list, the WebSocket
//! upgrade from any origin, the `url` in the create response, the thesis' spellings,
//! `WRS_README_PATH` and `WRS_MAX_STARTUP_DELAY`.

use std::time::{Duration, Instant};

use serde_json::json;
use wrs_test_support::*;

const PAGE: &str = "http://localhost:3000";

fn preflight_headers<'a>(origin: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("origin", origin),
        ("access-control-request-method", method),
        (
            "access-control-request-headers",
            "authorization,content-type,x-channel-token",
        ),
    ]
}

#[actix_rt::test]
async fn preflights_answer_204_with_methods_and_headers_on_every_rest_route() {
    let s = Server::start(&[("WRS_AUTH", "true"), ("WRS_AUTH_TOKEN", "t0k")]).await;
    for (path, method) in [
        ("/channels", "POST"),
        ("/channels", "GET"),
        ("/channels/abc", "DELETE"),
        ("/channel/abc", "GET"),
        ("/cluster", "GET"),
        ("/reset", "DELETE"),
    ] {
        // No token: a browser never sends credentials on a preflight, and auth is on.
        let res = s
            .request("OPTIONS", path, &preflight_headers(PAGE, method), None)
            .await;
        assert_eq!(
            res.status,
            204,
            "OPTIONS {path} for {method}: {}",
            res.text()
        );
        assert_eq!(
            res.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        let methods = res
            .header("access-control-allow-methods")
            .unwrap_or_default();
        for m in ["GET", "POST", "DELETE"] {
            assert!(methods.contains(m), "allow-methods {methods:?} lacks {m}");
        }
        let headers = res
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for h in ["authorization", "content-type", "x-channel-token"] {
            assert!(headers.contains(h), "allow-headers {headers:?} lacks {h}");
        }
        assert!(res.body.is_empty(), "a 204 has no body");
    }
    // A preflight for a method the API does not have is refused with a JSON 403.
    let res = s
        .request(
            "OPTIONS",
            "/channels",
            &preflight_headers(PAGE, "PUT"),
            None,
        )
        .await;
    res.assert_error(403, "cors_rejected");
    // An OPTIONS that is not a preflight is an ordinary request to a route without OPTIONS.
    let res = s.request("OPTIONS", "/channels", &[], None).await;
    assert_eq!(res.status, 401, "auth is checked first: {}", res.text());
}

#[actix_rt::test]
async fn every_response_errors_included_carries_allow_origin() {
    let s = Server::start(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", "t0k"),
        ("WRS_AUTH_RESOURCES", "POST:/channels"),
    ])
    .await;
    let origin = [("origin", PAGE)];
    let json_origin = [("origin", PAGE), ("content-type", "application/json")];
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        u16,
    );
    let cases: Vec<Case> = vec![
        ("GET", "/channels", &origin, None, 200),
        ("GET", "/channels/nope", &origin, None, 404),
        (
            "POST",
            "/channels",
            &json_origin,
            Some(r#"{"pattern":"echo"}"#),
            401,
        ),
        (
            "POST",
            "/channels?auth=t0k",
            &json_origin,
            Some(r#"{"pattern":"nope"}"#),
            400,
        ),
        ("POST", "/channels?auth=t0k", &json_origin, Some("{"), 400),
        ("PUT", "/channels", &origin, None, 405),
        ("GET", "/no/such/route", &origin, None, 404),
        ("GET", "/healthz", &origin, None, 200),
    ];
    for (method, path, headers, body, status) in cases {
        let res = s
            .request(method, path, headers, body.map(|b| b.as_bytes().to_vec()))
            .await;
        assert_eq!(res.status, status, "{method} {path}: {}", res.text());
        assert_eq!(
            res.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{method} {path} ({status}) lacks the CORS header"
        );
    }
    // A request without Origin (curl, a server) gets no CORS headers: there is no page to tell.
    let res = s.get("/channels").await;
    assert_eq!(res.header("access-control-allow-origin"), None);
}

#[actix_rt::test]
async fn an_origin_off_the_list_gets_no_cors_headers_and_a_listed_one_is_echoed() {
    let s = Server::start(&[("WRS_CORS_ORIGINS", "http://app.example:3000 null")]).await;
    let body = Some(br#"{"pattern":"echo"}"#.to_vec());
    for allowed in ["http://app.example:3000", "null"] {
        let res = s
            .request(
                "POST",
                "/channels",
                &[("origin", allowed), ("content-type", "application/json")],
                body.clone(),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        assert_eq!(
            res.header("access-control-allow-origin").as_deref(),
            Some(allowed)
        );
        assert!(res.header("vary").unwrap_or_default().contains("Origin"));
        let pre = s
            .request(
                "OPTIONS",
                "/channels",
                &preflight_headers(allowed, "POST"),
                None,
            )
            .await;
        assert_eq!(pre.status, 204, "{}", pre.text());
        assert_eq!(
            pre.header("access-control-allow-origin").as_deref(),
            Some(allowed)
        );
    }
    // Off the list: the request is served (curl with an Origin keeps working) but carries no
    // CORS header, so a browser hides the answer from the page; its preflight is refused.
    let other = "http://evil.example";
    let res = s
        .request(
            "POST",
            "/channels",
            &[("origin", other), ("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.header("access-control-allow-origin"), None);
    let pre = s
        .request(
            "OPTIONS",
            "/channels",
            &preflight_headers(other, "POST"),
            None,
        )
        .await;
    pre.assert_error(403, "cors_rejected");
    assert_eq!(pre.header("access-control-allow-origin"), None);
}

#[actix_rt::test]
async fn the_websocket_upgrade_accepts_any_origin_the_channel_token_is_the_guard() {
    let s = Server::start(&[("WRS_CORS_ORIGINS", "http://app.example:3000")]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let url = s.ws_url(&c.connect_path());
    let mut ws = s
        .try_ws_url(&url, Some("http://evil.example"))
        .await
        .expect("an upgrade from any origin with the right token opens");
    ws.send_text("from another origin").await;
    assert_eq!(ws.recv_text().await, "from another origin");
    let wrong = s.ws_url(&Server::connect_path(&c.id, "wrong-token"));
    let refused = s.try_ws_url(&wrong, Some("http://app.example:3000")).await;
    assert!(
        refused.is_err(),
        "a wrong token is refused whatever the origin"
    );
}

#[actix_rt::test]
async fn create_returns_a_url_that_opens_as_is() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let url = c.body["url"].as_str().expect("url in the create response");
    assert_eq!(
        url,
        format!("ws://127.0.0.1:{}{}", s.api_port, c.connect_path())
    );
    assert_eq!(c.body["connect"], c.connect_path().as_str());
    let mut ws = s.try_ws_url(url, None).await.expect("the url opens");
    ws.send_text("as is").await;
    assert_eq!(ws.recv_text().await, "as is");
}

#[actix_rt::test]
async fn behind_a_tls_proxy_the_url_says_wss_and_names_the_public_address() {
    let s = Server::start(&[
        ("WRS_PUBLIC_SSL", "true"),
        ("WRS_DOMAIN", "relay.example.org"),
        ("WRS_PUBLIC_API_PORT", "443"),
    ])
    .await;
    let c = s.create(json!({"pattern": "pub-sub"})).await;
    assert_eq!(
        c.body["url"],
        format!("wss://relay.example.org:443{}", c.connect_path()).as_str()
    );
}

#[actix_rt::test]
async fn public_url_names_the_address_clients_use_when_the_node_has_an_internal_name() {
    let s = Server::start(&[
        ("WRS_DOMAIN", "wrs-0.wrs-peers"),
        ("WRS_PUBLIC_URL", "wss://relay.example.org"),
    ])
    .await;
    let c = s.create(json!({"pattern": "echo"})).await;
    assert_eq!(
        c.body["url"],
        format!("wss://relay.example.org{}", c.connect_path()).as_str()
    );
}

#[actix_rt::test]
async fn with_tls_the_url_is_wss_and_opens_as_is() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_cert(certs.path());
    let s = Server::start(&[
        ("WRS_SSL", "true"),
        ("WRS_SSL_CERT_PATH", cert.to_str().expect("utf-8 path")),
        ("WRS_SSL_KEY_PATH", key.to_str().expect("utf-8 path")),
    ])
    .await;
    let c = s.create(json!({"pattern": "echo"})).await;
    let url = c.body["url"].as_str().expect("url");
    assert_eq!(
        url,
        format!("wss://127.0.0.1:{}{}", s.api_port, c.connect_path())
    );
    let mut ws = s.try_ws_url(url, None).await.expect("the wss url opens");
    ws.send_text("over tls").await;
    assert_eq!(ws.recv_text().await, "over tls");
}

#[actix_rt::test]
async fn the_thesis_spelling_of_auth_resources_protects_what_it_names() {
    let s = Server::start(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", "t0k"),
        ("WRS_AUTH_RESSOURCES", "POST:/channels"),
    ])
    .await;
    let res = s.post_json("/channels", &json!({"pattern": "echo"})).await;
    res.assert_error(401, "unauthorized");
    assert_eq!(s.get("/channels").await.status, 200, "GET is not named");
    let res = s
        .post_json("/channels?auth=t0k", &json!({"pattern": "echo"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
}

#[actix_rt::test]
async fn the_thesis_spelling_of_snapshot_length_sets_when_the_log_is_compacted() {
    let s = Server::start(&[("WRS_NODE_SNAPSHOT_LENGHT", "3")]).await;
    for _ in 0..6 {
        s.create_channel("echo").await;
    }
    let deadline = Instant::now() + WAIT;
    while !s.logs().contains("compacted the log") {
        assert!(
            Instant::now() < deadline,
            "no compaction after 6 writes with WRS_NODE_SNAPSHOT_LENGHT=3:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With the default length (10,000) six writes compact nothing: the alias did it.
    let d = Server::start(&[]).await;
    for _ in 0..6 {
        d.create_channel("echo").await;
    }
    assert!(!d.logs().contains("compacted the log"));
}

#[actix_rt::test]
async fn both_spellings_set_differently_stop_the_start_naming_both() {
    for (var, alias, a, b) in [
        (
            "WRS_AUTH_RESOURCES",
            "WRS_AUTH_RESSOURCES",
            "POST:/channels",
            "*:/cluster",
        ),
        (
            "WRS_NODE_SNAPSHOT_LENGTH",
            "WRS_NODE_SNAPSHOT_LENGHT",
            "100",
            "200",
        ),
    ] {
        let out = run_with_env(&[(var, a), (alias, b)]).await;
        assert_config_error(&out, var);
        assert!(out.stderr.contains(alias), "stderr: {}", out.stderr);
    }
    for (env, var) in [
        (
            ("WRS_README_PATH", "/nonexistent/OPERATOR.md"),
            "WRS_README_PATH",
        ),
        (("WRS_CORS_ORIGINS", "localhost:3000"), "WRS_CORS_ORIGINS"),
        (("WRS_PUBLIC_SSL", "perhaps"), "WRS_PUBLIC_SSL"),
        (
            ("WRS_PUBLIC_URL", "https://relay.example.org"),
            "WRS_PUBLIC_URL",
        ),
        (("WRS_MAX_STARTUP_DELAY", "soon"), "WRS_MAX_STARTUP_DELAY"),
    ] {
        let out = run_with_env(&[env]).await;
        assert_config_error(&out, var);
    }
    let out = run_with_env(&[("WRS_README_PATH", "/nonexistent/OPERATOR.md")]).await;
    assert!(
        out.stderr.contains("/nonexistent/OPERATOR.md"),
        "names the path"
    );
}

#[actix_rt::test]
async fn readme_path_serves_the_operators_markdown_at_readme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("OPERATOR.md");
    std::fs::write(
        &path,
        "# Our relay\n\nAsk *ops* before creating channels.\n",
    )
    .expect("write");
    let s = Server::start(&[("WRS_README_PATH", path.to_str().expect("utf-8"))]).await;
    let res = s.get("/readme").await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    let page = res.text();
    assert!(page.contains("<h1>Our relay</h1>"), "{page}");
    assert!(page.contains("<em>ops</em>"), "{page}");
    assert!(
        !page.contains("WebSocket Relay Service"),
        "the built-in README is replaced"
    );
    // Without it, the built-in README.
    let d = Server::start(&[]).await;
    assert!(d.get("/readme").await.text().contains("wrs"));
}

#[actix_rt::test]
async fn max_startup_delay_holds_discovery_back_for_the_logged_time() {
    let started = Instant::now();
    let s = Server::start(&[("WRS_MAX_STARTUP_DELAY", "1500")]).await;
    let mut waited = None;
    loop {
        if waited.is_none() {
            waited = s.logs().lines().find_map(|l| {
                let rest = l.split("startup delay: waiting ").nth(1)?;
                rest.split(' ').next()?.parse::<u64>().ok()
            });
        }
        if s.get("/readyz").await.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never ready:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = started.elapsed();
    // A zero draw logs nothing and waits nothing; any other draw must have been waited out.
    if let Some(ms) = waited {
        assert!(ms <= 1500, "the delay {ms} ms exceeds the maximum");
        assert!(
            ready_after >= Duration::from_millis(ms),
            "ready after {ready_after:?}, before the logged delay of {ms} ms"
        );
    }
    let c = s.create(json!({"pattern": "echo"})).await;
    assert!(!c.id.is_empty());
}
