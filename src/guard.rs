//! The door only the user opens: which HTTP requests reach the daemon at all.
//!
//! Like Ollama itself, a daemon listening on loopback accepts only loopback `Host` values
//! (`localhost`, `127.0.0.1`, `[::1]`, with any port), so a web page cannot reach it by DNS
//! rebinding; and any request whose `Origin` is not a loopback origin, nor one listed in
//! `EDGENT_ORIGINS`, is refused, so a page on another site cannot make the user's browser
//! call `/delegate` (and spend the user's USDC) or the model APIs. Both answer 403.
//!
//! `EDGENT_API_TOKEN`, when set, is required as `Authorization: Bearer <token>` on every
//! route but the dashboard page and `/healthz` (401 without it). A daemon refuses to
//! listen on an address other than loopback without a token ([`check_bind`]).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

/// What the guard lets in.
#[derive(Debug, Clone, Default)]
pub struct GuardSettings {
    /// `EDGENT_API_TOKEN`: the Bearer token every API route needs, when set.
    pub token: Option<String>,
    /// `EDGENT_ORIGINS`: extra allowed `Origin` values (exact, e.g. `https://app.example`),
    /// or `*` for any.
    pub origins: Vec<String>,
    /// Whether the `Host` header is checked (the listener is on loopback).
    pub check_host: bool,
}

pub use crate::config::{check_bind, UnsafeBind};

/// Whether a `Host` header value names this machine's loopback.
pub fn loopback_host(host: &str) -> bool {
    let h = host.trim();
    // [::1]:port, [::1], host:port, host
    let name = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => h,
        }
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether an `Origin` is allowed: a loopback http(s) origin, or one of `extra`.
pub fn allowed_origin(origin: &str, extra: &[String]) -> bool {
    let o = origin.trim();
    if extra.iter().any(|e| e == "*" || e.eq_ignore_ascii_case(o)) {
        return true;
    }
    let rest = match o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
    {
        Some(r) => r,
        None => return false,
    };
    !rest.contains('/') && loopback_host(rest)
}

/// Compare two secrets without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A foreign `Host` (403).
    Host(String),
    /// A foreign `Origin` (403).
    Origin(String),
    /// No or a wrong token (401).
    Token,
}

/// Check one request's headers; `open` routes skip the token (not the Host/Origin check).
pub fn check(settings: &GuardSettings, headers: &HeaderMap, open: bool) -> Result<(), Refusal> {
    if settings.check_host {
        if let Some(host) = headers.get(header::HOST) {
            let h = host.to_str().unwrap_or("");
            if !loopback_host(h) {
                return Err(Refusal::Host(h.chars().take(100).collect()));
            }
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        if !allowed_origin(o, &settings.origins) {
            return Err(Refusal::Origin(o.chars().take(100).collect()));
        }
    }
    if let (Some(token), false) = (&settings.token, open) {
        match bearer(headers) {
            Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => {}
            _ => return Err(Refusal::Token),
        }
    }
    Ok(())
}

/// The error body in the shape of the API the path belongs to: OpenAI's under `/v1/`,
/// Ollama's under `/api/`, edgent's `{error, detail}` elsewhere.
pub fn refusal_response(path: &str, status: StatusCode, code: &str, message: &str) -> Response {
    let body = if path.starts_with("/v1/") {
        json!({"error": {"message": message, "type": code, "param": null, "code": null}})
    } else if path.starts_with("/api/") {
        json!({"error": message})
    } else {
        serde_json::Value::Object(crate::request::error_body(code, message, None))
    };
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// `router` behind the [`guard`] with `settings` (a listener's, from the front door's
/// settings).
pub fn guarded(router: Router, settings: GuardSettings) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(settings),
        guard,
    ))
}

/// The axum middleware: `from_fn_with_state(Arc<GuardSettings>, guard)`.
pub async fn guard(
    State(settings): State<Arc<GuardSettings>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let open = (req.method() == Method::GET || req.method() == Method::HEAD)
        && (path == "/" || path == "/healthz");
    match check(&settings, req.headers(), open) {
        Ok(()) => next.run(req).await,
        Err(r) => {
            let (status, code, message) = match &r {
                Refusal::Host(h) => (
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("Host {h:?} is not this machine's loopback"),
                ),
                Refusal::Origin(o) => (
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("Origin {o:?} is not allowed (EDGENT_ORIGINS)"),
                ),
                Refusal::Token => (
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid Authorization: Bearer token (EDGENT_API_TOKEN) is required"
                        .to_string(),
                ),
            };
            tracing::warn!(%path, refusal = ?r, "request refused");
            refusal_response(&path, status, code, &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:11434",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
            "LOCALHOST:1",
            "app.localhost:3000",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.com",
            "evil.com:8080",
            "10.0.0.1",
            "192.168.1.2:80",
            "localhost.evil.com",
            "[::2]:80",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn origins() {
        assert!(allowed_origin("http://127.0.0.1:8080", &[]));
        assert!(allowed_origin("http://localhost", &[]));
        assert!(!allowed_origin("https://evil.com", &[]));
        assert!(!allowed_origin("null", &[]));
        assert!(!allowed_origin("http://127.0.0.1.evil.com", &[]));
        let extra = vec!["https://app.example".to_string()];
        assert!(allowed_origin("https://app.example", &extra));
        assert!(!allowed_origin("https://app.example.evil", &extra));
    }

    #[test]
    fn token_is_required_when_set() {
        let s = GuardSettings {
            token: Some("s3cret".into()),
            origins: vec![],
            check_host: true,
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:1"));
        assert_eq!(check(&s, &h, false), Err(Refusal::Token));
        assert_eq!(check(&s, &h, true), Ok(()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(check(&s, &h, false), Err(Refusal::Token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(check(&s, &h, false), Ok(()));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.com"));
        assert!(matches!(check(&s, &h, false), Err(Refusal::Origin(_))));
    }

    #[test]
    fn non_loopback_bind_needs_a_token() {
        let lo: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_bind("EDGENT_HTTP_ADDR", lo, None).is_ok());
        assert!(check_bind("EDGENT_HTTP_ADDR", any, None).is_err());
        assert!(check_bind("EDGENT_HTTP_ADDR", any, Some("")).is_err());
        assert!(check_bind("EDGENT_HTTP_ADDR", any, Some("t")).is_ok());
    }
}
