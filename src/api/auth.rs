//! API authentication: which requests `WRS_AUTH_RESOURCES` protects (matched on the canonical
//! plural path), where a token may come from (query, Bearer header, JSON body), and the
//! middleware that answers 401 before any handler runs. A server-side publish's body is the
//! message itself: it is never read here (the token comes by query or header there), so it
//! reaches its handler untouched and bounded by `WRS_MAX_MESSAGE_SIZE`, not `WRS_MAX_BODY`.

use std::collections::HashMap;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};
use serde_json::Value;

use super::path::normalise;
use super::AppState;
use crate::body;
use crate::cluster::peer::proof;
use crate::config::AuthRule;
use crate::error::ApiError;
use crate::token;

#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub token: String,
    /// Empty = every route but the health probes.
    pub rules: Vec<AuthRule>,
}

/// Browser-only GET routes are judged as the POST / DELETE they stand for.
fn effective<'a>(method: &'a str, canonical: &str) -> (&'a str, String) {
    if method == "GET" {
        if canonical == "/channels/create" {
            return ("POST", "/channels".into());
        }
        if let Some(id) = canonical
            .strip_prefix("/channels/")
            .and_then(|rest| rest.strip_suffix("/delete"))
            .filter(|id| !id.contains('/'))
        {
            return ("DELETE", format!("/channels/{id}"));
        }
    }
    (method, canonical.to_owned())
}

impl AuthPolicy {
    /// Whether a request with this method and canonical path (`path::normalise`) needs the
    /// API token.
    pub fn protects(&self, method: &str, canonical: &str) -> bool {
        if canonical == "/healthz" || canonical == "/readyz" {
            return false;
        }
        if self.rules.is_empty() {
            return true;
        }
        let (method, path) = effective(method, canonical);
        self.rules.iter().any(|rule| {
            rule.method.as_deref().is_none_or(|m| m == method) && rule.path.is_match(&path)
        })
    }

    fn accepts(&self, presented: &str) -> bool {
        token::matches(presented, &self.token)
    }
}

/// Whether the body of a request to this canonical path is a user's message
/// (`/channels/{id}/messages`), which must not be searched for a token.
pub fn body_is_payload(canonical: &str) -> bool {
    canonical
        .strip_prefix("/channels/")
        .and_then(|rest| rest.strip_suffix("/messages"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Checks the query, then the header, then (for requests with a body that is not a user's
/// message) the JSON body.
async fn authorized(
    req: &mut ServiceRequest,
    policy: &AuthPolicy,
    max_body: usize,
    canonical: &str,
) -> Result<bool, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    if let Some(t) = query.as_ref().and_then(|q| q.get("auth")) {
        return Ok(policy.accepts(t));
    }
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        return Ok(bearer.is_some_and(|t| policy.accepts(t)));
    }
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body || *req.method() == Method::GET || body_is_payload(canonical) {
        return Ok(false);
    }
    let (http_req, payload) = req.parts_mut();
    let bytes = body::read(http_req, payload, max_body).await?;
    let presented = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("auth").and_then(Value::as_str).map(str::to_owned));
    // Put the body back for the handler.
    req.set_payload(actix_web::dev::Payload::from(bytes));
    Ok(presented.is_some_and(|t| policy.accepts(&t)))
}

/// The answer to a cluster challenge on `GET /cluster` (`proof`), when this node has a secret:
/// a joining node checks it before it sends this address its API token.
fn cluster_answer(req: &ServiceRequest, state: &AppState) -> Option<HeaderValue> {
    let secret = state.config.cluster_secret.as_deref()?;
    // The header first: the common request has none, and then nothing else is looked at.
    let challenge = req.headers().get(proof::CHALLENGE_HEADER)?.to_str().ok()?;
    if req.method() != Method::GET || normalise(req.path()).ok()? != "/cluster" {
        return None;
    }
    let host = req.headers().get(HOST)?.to_str().ok()?;
    if challenge.len() > 64 {
        return None;
    }
    HeaderValue::from_str(&proof::answer(secret, challenge, host)).ok()
}

/// The middleware: 401 for a protected request without the right token (and, on `GET
/// /cluster`, the answer to a cluster challenge, on a 401 too).
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let answer = state.as_ref().and_then(|s| cluster_answer(&req, s));
    let with_answer = |mut res: ServiceResponse<_>| {
        if let Some(a) = &answer {
            res.headers_mut()
                .insert(HeaderName::from_static(proof::ANSWER_HEADER), a.clone());
        }
        res
    };
    if let Some(state) = state {
        if let Some(policy) = &state.auth {
            let canonical = normalise(req.path()).map_err(|e| ApiError::InvalidPath(e.0))?;
            if policy.protects(req.method().as_str(), &canonical)
                && !authorized(&mut req, policy, state.config.max_body, &canonical).await?
            {
                log::debug!("401 for {} {}", req.method(), req.path());
                let res = req.into_response(ApiError::Unauthorized.error_response());
                return Ok(with_answer(res.map_into_right_body()));
            }
        }
    }
    Ok(with_answer(next.call(req).await?.map_into_left_body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth_rules;

    fn policy(spec: &str) -> AuthPolicy {
        AuthPolicy {
            token: "t".into(),
            rules: auth_rules(spec).unwrap(),
        }
    }

    #[test]
    fn empty_rules_protect_everything_but_health_probes() {
        let p = policy("");
        assert!(p.protects("GET", "/"));
        assert!(p.protects("GET", "/channels/x/connect"));
        assert!(!p.protects("GET", "/healthz"));
        assert!(!p.protects("GET", "/readyz"));
    }

    #[test]
    fn rules_match_method_and_anchored_canonical_path() {
        let p = policy("POST:/channels DELETE:/channels");
        assert!(p.protects("POST", "/channels"));
        assert!(p.protects("DELETE", "/channels/abc"));
        assert!(!p.protects("GET", "/channels"));
        assert!(!p.protects("GET", "/x/channels"));
    }

    #[test]
    fn only_publish_bodies_count_as_payload() {
        assert!(body_is_payload("/channels/abc/messages"));
        assert!(!body_is_payload("/channels/messages"));
        assert!(!body_is_payload("/channels/a/b/messages"));
        assert!(!body_is_payload("/channels"));
        assert!(!body_is_payload("/channels/abc"));
    }

    #[test]
    fn browser_only_routes_are_judged_as_what_they_do() {
        let p = policy("POST:/channels DELETE:/channels/");
        assert!(p.protects("GET", "/channels/create"));
        assert!(p.protects("GET", "/channels/abc/delete"));
        assert!(!p.protects("GET", "/channels/abc"));
    }
}
