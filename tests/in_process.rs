//! A node started in-process through the library (`wrs::run`), no binary: REST and a
//! WebSocket over real sockets, and the stop future ending the node with `1001` to clients.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local_addr").port()
}

/// A configuration for one node on free loopback ports; returns its API port too.
fn loopback_config() -> (u16, wrs::config::Config) {
    let (api, node) = (free_port(), free_port());
    let env: HashMap<&str, String> = [
        ("WRS_BIND", "127.0.0.1".to_string()),
        ("WRS_DOMAIN", "127.0.0.1".to_string()),
        ("WRS_API_PORT", api.to_string()),
        ("WRS_NODE_PORT", node.to_string()),
    ]
    .into_iter()
    .collect();
    let cli = <wrs::config::Cli as clap::Parser>::parse_from(["wrs"]);
    let config = wrs::config::Config::load(|k| env.get(k).cloned(), cli).expect("valid config");
    (api, config)
}

#[actix_rt::test]
async fn in_process_node_relays_echo_and_stops_with_1001() {
    let (api, config) = loopback_config();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = std::thread::spawn(move || {
        let stop = async move {
            let _ = stop_rx.await;
        };
        actix_rt::System::new().block_on(wrs::run(Arc::new(config), stop))
    });

    let client = awc::Client::default();
    let base = format!("http://127.0.0.1:{api}");
    // The node is ready once it has bootstrapped its one-node cluster.
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status().is_success() {
                ready = true;
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the in-process node never became ready");

    let mut res = client
        .post(format!("{base}/channels"))
        .send_json(&serde_json::json!({ "pattern": "echo" }))
        .await
        .expect("POST /channels");
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await.expect("create body");
    let connect = body["connect"].as_str().expect("connect path").to_owned();

    let (_, mut ws) = client
        .ws(format!("ws://127.0.0.1:{api}{connect}"))
        .connect()
        .await
        .expect("WebSocket connect");
    ws.send(Message::Text("hello".into())).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo within 5 s");
    assert!(matches!(echoed, Some(Ok(Frame::Text(t))) if &t[..] == b"hello"));

    stop_tx.send(()).expect("node still running");
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("close within 10 s");
    match closed {
        Some(Ok(Frame::Close(Some(reason)))) => assert_eq!(u16::from(reason.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    let result = tokio::task::spawn_blocking(move || node.join())
        .await
        .expect("join task");
    assert!(matches!(result, Ok(Ok(()))), "run ended with {result:?}");
}

/// Run as a child of the test below: a real node in this process, the panic hook `main`
/// installs, then an actor that panics in its handler.
fn crash_child() {
    use actix::prelude::*;

    struct Doomed;
    impl Actor for Doomed {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Die;
    impl Handler<Die> for Doomed {
        type Result = ();
        fn handle(&mut self, _: Die, _: &mut Context<Self>) {
            panic!("injected: this actor dies");
        }
    }

    let _ = env_logger::builder().is_test(false).try_init();
    wrs::server::exit_on_panic();
    let (api, config) = loopback_config();
    actix_rt::System::new().block_on(async move {
        actix_rt::spawn(wrs::run(Arc::new(config), std::future::pending()));
        let client = awc::Client::default();
        let ready = format!("http://127.0.0.1:{api}/readyz");
        for _ in 0..200 {
            if matches!(client.get(&ready).send().await, Ok(r) if r.status() == 200) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
        println!("CHILD: node ready on {api}; killing an actor");
        let doomed = Doomed.start();
        let _ = doomed.send(Die).await;
        println!("CHILD: still alive after the panic");
    });
}

#[test]
fn a_panic_in_any_actor_ends_the_process_with_exit_70_and_one_log_line() {
    if std::env::var_os("WRS_CRASH_CHILD").is_some() {
        crash_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_panic_in_any_actor_ends_the_process_with_exit_70_and_one_log_line",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WRS_CRASH_CHILD", "1")
        .env("RUST_LOG", "error")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "child exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(
        stdout.contains("CHILD: node ready"),
        "the node did not start"
    );
    assert!(
        !stdout.contains("still alive"),
        "the process outlived the panic"
    );
    assert_eq!(out.status.code(), Some(70), "exit code");
    let fatal: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("fatal: thread"))
        .collect();
    assert_eq!(fatal.len(), 1, "one log line: {fatal:?}");
    assert!(
        fatal[0].contains("injected: this actor dies"),
        "{}",
        fatal[0]
    );
}
