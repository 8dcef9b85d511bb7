//! CORS for browser apps on other origins (`WRS_CORS_ORIGINS`): actix-cors does the protocol;
//! this file configures it and makes its answers look like the rest of the API — a preflight
//! is `204`, a refused preflight a JSON `403` — because actix-cors answers `200` and plain text.

use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use crate::config::CorsOrigins;
use crate::error::ApiError;

/// Request headers a page may send: the API token, JSON bodies, and the channel token header.
const ALLOWED_HEADERS: [&str; 3] = ["authorization", "content-type", "x-channel-token"];

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// The actix-cors middleware for these origins. A request from an origin off the list is
/// served without CORS headers (the browser then hides the answer from the page) rather than
/// refused, so curl and server-side callers that send an `Origin` keep working.
pub fn layer(origins: &CorsOrigins) -> Cors {
    let cors = match origins {
        // No credentials (cookies) are involved, so `*` is the honest answer for "any".
        CorsOrigins::Any => Cors::default().allow_any_origin().send_wildcard(),
        CorsOrigins::List(list) => {
            let list = list.clone();
            // A predicate rather than `allowed_origin`: that one parses each entry as a URI,
            // which `null` (a page opened from a file) is not.
            Cors::default()
                .allowed_origin_fn(move |origin, _| list.iter().any(|o| o.as_bytes() == origin))
        }
    };
    cors.allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .max_age(PREFLIGHT_MAX_AGE_SECS)
        .block_on_origin_mismatch(false)
}

/// Wraps the CORS layer: a successful preflight answers `204 No Content`, a refused one (origin
/// off the list, method or header not allowed) the API's JSON `403 cors_rejected`.
pub async fn answers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = next.call(req).await?;
    let refused = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(|e| e.to_string());
    if let Some(reason) = refused {
        let response = ApiError::CorsRejected(reason).error_response();
        return Ok(res.into_response(response).map_into_right_body());
    }
    if preflight && res.status() == StatusCode::OK {
        *res.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(res.map_into_left_body())
}
