//! Proof of `WRS_CLUSTER_SECRET` without sending it: a peer request carries
//! `x-wrs-cluster-auth: v1 <unix ms> <nonce> <hmac>`, the HMAC-SHA256 under the secret of the
//! method, path, calling node id, time and nonce. The receiver checks the MAC in constant time,
//! refuses a time more than `WINDOW` away from its clock, and remembers each accepted nonce for
//! that window, so a captured header can neither be reused nor turned into the secret.
//!
//! The same primitive answers a challenge (`answer`/`check_answer`): a node asked to join an
//! address makes it prove it holds the secret before sending it anything it must not.
//!
//! What it does not do: the body is not covered (it is authenticated before a byte of it is
//! read), and the traffic is not encrypted — someone who can rewrite packets on the peer network
//! can still tamper with a body in flight. Keep the peer network private (docs/security.md).
//! Hand-written on OpenSSL's HMAC because the format is ten lines and OpenSSL is already here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::hash::MessageDigest;
use openssl::memcmp;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The header a peer request proves the secret in.
pub const AUTH_HEADER: &str = "x-wrs-cluster-auth";
/// On `GET /cluster` of the public API: a challenge the answering node must answer ...
pub const CHALLENGE_HEADER: &str = "x-wrs-cluster-challenge";
/// ... in this response header, with `answer` over the `Host` it was reached at.
pub const ANSWER_HEADER: &str = "x-wrs-cluster-answer";
/// How far a proof's clock may be from the receiver's (and how long a nonce is remembered).
pub const WINDOW: Duration = Duration::from_secs(30);
/// Nonces remembered at most; only requests with a valid MAC add one, so only holders of the
/// secret can fill it, and a full set refuses new proofs rather than growing.
const MAX_SEEN: usize = 65_536;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("no cluster proof (x-wrs-cluster-auth) on the request")]
    Missing,
    #[error("the cluster proof is malformed")]
    Malformed,
    #[error("the cluster proof's clock is more than 30 s off")]
    Stale,
    #[error("the cluster proof does not match WRS_CLUSTER_SECRET")]
    Wrong,
    #[error("the cluster proof was used before")]
    Replayed,
}

fn mac(secret: &str, parts: &[&str]) -> String {
    // HMAC with a valid key and SHA-256 cannot fail short of a broken OpenSSL.
    let key = PKey::hmac(secret.as_bytes()).expect("HMAC key");
    let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("HMAC-SHA256");
    for p in parts {
        signer.update(p.as_bytes()).expect("HMAC update");
        signer.update(b"\n").expect("HMAC update");
    }
    let digest = signer.sign_to_vec().expect("HMAC sign");
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits as 32 hex characters.
fn nonce() -> String {
    crate::token::random_token(32)
}

/// The header value for a request `method path` from node `node` (its id, or "" when the
/// request names none).
pub fn sign(secret: &str, method: &str, path: &str, node: &str) -> String {
    let (t, n) = (now_ms().to_string(), nonce());
    let m = mac(secret, &["wrs-peer-v1", method, path, node, &t, &n]);
    format!("v1 {t} {n} {m}")
}

/// Checks proofs for one secret and remembers the nonces it accepted.
pub struct Verifier {
    secret: String,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Verifier {
    pub fn new(secret: String) -> Verifier {
        Verifier {
            secret,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        node: &str,
    ) -> Result<(), ProofError> {
        let header = header.ok_or(ProofError::Missing)?;
        let mut fields = header.split(' ');
        let (Some("v1"), Some(t), Some(n), Some(m), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(ProofError::Malformed);
        };
        let sent: u64 = t.parse().map_err(|_| ProofError::Malformed)?;
        if n.len() != 32 || m.len() != 64 {
            return Err(ProofError::Malformed);
        }
        if now_ms().abs_diff(sent) > WINDOW.as_millis() as u64 {
            return Err(ProofError::Stale);
        }
        let want = mac(&self.secret, &["wrs-peer-v1", method, path, node, t, n]);
        if !memcmp::eq(want.as_bytes(), m.as_bytes()) {
            return Err(ProofError::Wrong);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Twice the window: a proof up to WINDOW old may arrive up to WINDOW early.
        seen.retain(|_, at| now.duration_since(*at) < 2 * WINDOW);
        if seen.contains_key(n) || seen.len() >= MAX_SEEN {
            return Err(ProofError::Replayed);
        }
        seen.insert(n.to_owned(), now);
        Ok(())
    }
}

/// A fresh challenge for a node that must prove the secret.
pub fn challenge() -> String {
    nonce()
}

/// The answer to `challenge` from the node reached at `address` (the answer is bound to it, so
/// one node's answer cannot be relayed for another address).
pub fn answer(secret: &str, challenge: &str, address: &str) -> String {
    mac(secret, &["wrs-answer-v1", challenge, address])
}

pub fn check_answer(secret: &str, challenge: &str, address: &str, answer_given: &str) -> bool {
    let want = answer(secret, challenge, address);
    // `memcmp::eq` panics on different lengths, so they are compared first (the length of an
    // HMAC is public anyway).
    want.len() == answer_given.len() && memcmp::eq(want.as_bytes(), answer_given.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_once_and_only_for_what_it_signed() {
        let v = Verifier::new("s3cret".into());
        let h = sign("s3cret", "GET", "/link", "7");
        assert_eq!(v.verify(Some(&h), "GET", "/link", "7"), Ok(()));
        assert_eq!(
            v.verify(Some(&h), "GET", "/link", "7"),
            Err(ProofError::Replayed)
        );
        let h = sign("s3cret", "GET", "/link", "7");
        assert_eq!(
            v.verify(Some(&h), "GET", "/link", "8"),
            Err(ProofError::Wrong)
        );
        assert_eq!(
            v.verify(Some(&h), "POST", "/join", "7"),
            Err(ProofError::Wrong)
        );
        let other = sign("another", "GET", "/link", "7");
        assert_eq!(
            v.verify(Some(&other), "GET", "/link", "7"),
            Err(ProofError::Wrong)
        );
        assert!(!h.contains("s3cret"), "the secret never travels");
    }

    #[test]
    fn missing_malformed_and_stale_proofs_are_refused() {
        let v = Verifier::new("s".into());
        assert_eq!(v.verify(None, "GET", "/", ""), Err(ProofError::Missing));
        for bad in ["", "v1", "v2 1 2 3", "v1 x y z", "s", "v1 1 2 3 4"] {
            assert_eq!(
                v.verify(Some(bad), "GET", "/", ""),
                Err(ProofError::Malformed),
                "{bad:?}"
            );
        }
        let t = now_ms() - 31_000;
        let n = "0".repeat(32);
        let m = mac("s", &["wrs-peer-v1", "GET", "/", "", &t.to_string(), &n]);
        let stale = format!("v1 {t} {n} {m}");
        assert_eq!(
            v.verify(Some(&stale), "GET", "/", ""),
            Err(ProofError::Stale)
        );
    }

    #[test]
    fn a_challenge_answer_is_bound_to_the_secret_and_the_address() {
        let c = challenge();
        let a = answer("s", &c, "10.0.0.1:8080");
        assert!(check_answer("s", &c, "10.0.0.1:8080", &a));
        assert!(!check_answer("s", &c, "10.0.0.2:8080", &a));
        assert!(!check_answer("t", &c, "10.0.0.1:8080", &a));
        assert!(!check_answer("s", &challenge(), "10.0.0.1:8080", &a));
        assert!(!check_answer("s", &c, "10.0.0.1:8080", ""));
    }
}
