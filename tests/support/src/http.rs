//! REST over awc: any request, typed helpers for the channel routes, `Resp` and the JSON
//! error contract, `Created`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::*;

/// An awc client; `tls` makes it accept any certificate (our test certs are self-signed).
pub fn http_client(tls: bool) -> awc::Client {
    let mut connector = awc::Connector::new()
        .timeout(Duration::from_secs(5))
        .max_http_version(awc::http::Version::HTTP_11);
    if tls {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .expect("ssl connector builder");
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let _ = b.set_alpn_protos(b"\x08http/1.1");
        connector = connector.openssl(b.build());
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(15))
        .disable_redirects()
        .finish()
}

/// A response's headers as (lower-case name, value) pairs.
pub(crate) fn header_list(headers: &awc::http::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Reads an answer (status, headers, body up to `MAX_FRAME`) into a `Resp` named `what`.
pub async fn read_response<S>(mut res: awc::ClientResponse<S>, what: String) -> Result<Resp, String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = res.status().as_u16();
    let headers = header_list(res.headers());
    let body = res
        .body()
        .limit(MAX_FRAME)
        .await
        .map_err(|e| format!("{what}: reading body failed: {e}"))?
        .to_vec();
    Ok(Resp {
        what,
        status,
        headers,
        body,
    })
}

impl Server {
    /// Any request; `body` is sent as is (no content type unless given in `headers`).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let m = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, self.url(path));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Some(b) => req.send_body(b).await,
            None => req.send().await,
        };
        let res = sent.unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        read_response(res, format!("{method} {path}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_vec()),
        )
        .await
    }

    /// POST /channels with `body`; asserts 201 and returns the channel.
    pub async fn create(&self, body: Value) -> Created {
        let res = self.post_json("/channels", &body).await;
        Created::from_response(res)
    }

    /// Create a channel with the given pattern and defaults; returns (id, token).
    pub async fn create_channel(&self, pattern: &str) -> (String, String) {
        let c = self.create(json!({ "pattern": pattern })).await;
        (c.id, c.token)
    }

    /// GET /channels/{id} -> data (asserts 200).
    pub async fn channel(&self, id: &str) -> Value {
        let res = self.get(&format!("/channels/{id}")).await;
        assert_eq!(res.status, 200, "GET /channels/{id}: {}", res.text());
        res.json()["data"].clone()
    }

    /// The `clients` count of a channel.
    pub async fn clients(&self, id: &str) -> i64 {
        self.channel(id).await["clients"]
            .as_i64()
            .expect("clients is an integer")
    }

    /// Poll GET /channels/{id} until `clients == n`.
    pub async fn wait_clients(&self, id: &str, n: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.clients(id).await;
            if c == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "channel {id}: clients stayed {c}, expected {n} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Resp {
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}); status {}, body {:?}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }

    /// Assert an error response: `status`, JSON `{"message": non-empty string, "error": code}`.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}: expected status {status} ({code}), got {} with body {:?}",
            self.what,
            self.status,
            self.text()
        );
        let v = self.json();
        assert_json_error(&self.what, &v);
        assert_eq!(
            v["error"].as_str(),
            Some(code),
            "{}: expected error code {code:?}, body {v}",
            self.what
        );
        v
    }
}

/// `v` is `{"message": "<non-empty>", "error": "<non-empty>"}`.
pub fn assert_json_error(what: &str, v: &Value) {
    assert!(
        v["message"].as_str().is_some_and(|s| !s.trim().is_empty()),
        "{what}: error body needs a non-empty string \"message\": {v}"
    );
    assert!(
        v["error"].as_str().is_some_and(|s| !s.trim().is_empty()),
        "{what}: error body needs a non-empty string \"error\": {v}"
    );
}

/// A created channel.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub token: String,
    pub body: Value,
    pub location: Option<String>,
}

impl Created {
    pub fn from_response(res: Resp) -> Created {
        assert_eq!(
            res.status,
            201,
            "{}: expected 201, got body {:?}",
            res.what,
            res.text()
        );
        let body = res.json();
        let id = body["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("create response without data.id: {body}"))
            .to_string();
        let token = body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("create response without token: {body}"))
            .to_string();
        Created {
            id,
            token,
            location: res.header("location"),
            body,
        }
    }

    pub fn connect_path(&self) -> String {
        Server::connect_path(&self.id, &self.token)
    }
}
