//! A minimal HTTP/1.1 keep-alive client: one request in flight per connection, like a browser
//! tab or a `fetch` loop. Reconnects when the server closes.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{parse_created, AnyResult, Channel, Node};

pub struct HttpConn {
    node: Node,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    req: Vec<u8>,
    pub reconnects: u64,
}

impl HttpConn {
    pub async fn connect(node: &Node) -> AnyResult<HttpConn> {
        let mut c = HttpConn {
            node: node.clone(),
            sock: None,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(512),
            reconnects: 0,
        };
        c.ensure().await?;
        Ok(c)
    }

    async fn ensure(&mut self) -> AnyResult<()> {
        if self.sock.is_none() {
            let s = TcpStream::connect(self.node.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.node.host))?;
            let _ = s.set_nodelay(true);
            self.sock = Some(s);
            self.buf.clear();
            self.reconnects += 1;
        }
        Ok(())
    }

    /// Send one request and read its response: (status, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> AnyResult<(u16, Vec<u8>)> {
        self.request_as(method, path, "application/json", body)
            .await
    }

    /// `request` with another content type (a publish over HTTP sends `text/plain`).
    pub async fn request_as(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&str>,
    ) -> AnyResult<(u16, Vec<u8>)> {
        let r = self.request_once(method, path, content_type, body).await;
        if r.is_err() {
            self.sock = None;
        }
        r
    }

    async fn request_once(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&str>,
    ) -> AnyResult<(u16, Vec<u8>)> {
        self.ensure().await?;
        self.req.clear();
        let body = body.unwrap_or("");
        self.req.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                self.node.host,
                body.len()
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body.as_bytes());
        let sock = self.sock.as_mut().expect("connected");
        sock.write_all(&self.req)
            .await
            .map_err(|e| format!("write: {e}"))?;
        loop {
            if let Some((status, close, body, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                if close {
                    self.sock = None;
                }
                return Ok((status, body));
            }
            let mut chunk = [0u8; 8192];
            let n = sock
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by server".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

type Parsed = Option<(u16, bool, Vec<u8>, usize)>;

/// A complete response in `buf`: (status, connection-close, body, bytes used); `None` if more
/// bytes are needed.
fn parse_response(buf: &[u8]) -> AnyResult<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).map_err(|e| format!("bad response: {e}"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut len = None;
    let mut chunked = false;
    let mut close = false;
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        let mut body = Vec::new();
        let mut pos = head;
        loop {
            let Some(eol) = find_crlf(&buf[pos..]) else {
                return Ok(None);
            };
            let size_str = std::str::from_utf8(&buf[pos..pos + eol]).unwrap_or("");
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "bad chunk size".to_string())?;
            pos += eol + 2;
            if buf.len() < pos + size + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
            if size == 0 {
                return Ok(Some((status, close, body, pos)));
            }
        }
    }
    let len = len.unwrap_or(0);
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some((
        status,
        close,
        buf[head..head + len].to_vec(),
        head + len,
    )))
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

pub async fn create_channel(http: &mut HttpConn, pattern: &str) -> AnyResult<Channel> {
    let body = format!(r#"{{"pattern":"{pattern}"}}"#);
    let (status, body) = http.request("POST", "/channels", Some(&body)).await?;
    if status != 201 && status != 200 {
        return Err(format!(
            "POST /channels: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    parse_created(&body)
}

pub async fn delete_channel(node: &Node, id: &str) {
    if let Ok(mut http) = HttpConn::connect(node).await {
        let _ = http
            .request("DELETE", &format!("/channels/{id}"), None)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn content_length_and_partial() {
        let r = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1";
        let (status, close, body, used) = parse_response(r).unwrap().unwrap();
        assert_eq!(
            (status, close, body.as_slice(), used),
            (201, false, &b"{}"[..], 45)
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn chunked_and_close() {
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (status, close, body, used) = parse_response(r).unwrap().unwrap();
        assert_eq!(
            (status, close, body.as_slice(), used),
            (200, true, &b"abcde"[..], r.len())
        );
        assert!(parse_response(&r[..r.len() - 3]).unwrap().is_none());
    }
}
