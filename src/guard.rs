//! The door only the user opens: which HTTP requests reach the daemon at all, and as whom.
//!
//! Checks, in this order, on every route of the daemon (403, 415, 413 and 401 answer in the
//! error shape of the API the path belongs to: Ollama's under `/api/`, OpenAI's under
//! `/v1/`, edgent's `{error, detail}` elsewhere):
//!
//! 1. **Host** (403): a daemon listening on loopback accepts only loopback `Host` values
//!    (`localhost`, `127.0.0.1`, `[::1]`, any port), so a web page cannot reach it by DNS
//!    rebinding.
//! 2. **Origin** (403): a request that carries an `Origin` must come from the daemon's own
//!    origin (`http://` or `https://` and the request's own `Host`, e.g. the dashboard) or
//!    one listed in `EDGENT_ORIGINS`. A page on another localhost port is another origin.
//! 3. **Content type** (415): a `POST` to a model route or `/delegate` must be
//!    `application/json`, so no CORS "simple request" (`text/plain`, a form) from a page
//!    gets in without a preflight, which is never granted.
//! 4. **Size** (413): a body over [`MAX_BODY_BYTES`].
//! 5. **Who** ([`Caller`]): with an API token (`EDGENT_API_TOKEN` or the file at
//!    `EDGENT_API_TOKEN_PATH`, which `edgent init` writes), a caller that presents it, as
//!    `Authorization: Bearer` or as the dashboard's cookie, is the [`Caller::Owner`]. A
//!    caller without it, on a loopback listener, is a [`Caller::Local`]: it may use the
//!    model routes (`/api/*`, `/v1/*`) and `POST /delegate` for **unpaid work only** (the
//!    local Ollama, or the mesh while payments are off); a delegation that would spend
//!    USDC, `/status`, `/jobs`, `/metrics` and `/mcp` need the token (401). Ollama's
//!    clients send no token and OpenAI's send their `api_key`: a wrong bearer token counts
//!    as none, so both keep working unchanged for unpaid work. The dashboard page and
//!    `/healthz` are open. Without any token configured every caller that passes 1-4 is the
//!    owner. A daemon refuses to listen on an address other than loopback without a token
//!    ([`check_bind`]); there a caller without the token gets only the open routes.
//!
//! The dashboard gets the token once: `GET /?token=<token>` answers with an `HttpOnly`,
//! `SameSite=Strict` cookie ([`COOKIE`]) and a redirect to `/`; the page's own `fetch`es
//! then carry it. The cookie counts for `GET`/`HEAD`, and for other methods only with an
//! allowed `Origin` (a browser always sends one on a `POST`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::chain::Secret;

/// The largest request body any route takes (a chat with images, base64, fits), the
/// mesh's own message limit.
pub const MAX_BODY_BYTES: usize = crate::protocol::MAX_MESSAGE_BYTES;

/// The dashboard's cookie: the API token, set by `GET /?token=`.
pub const COOKIE: &str = "edgent_token";

/// How long the dashboard's cookie lasts (30 days).
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// What the guard lets in.
#[derive(Debug, Clone, Default)]
pub struct GuardSettings {
    /// The API token, when one is configured.
    pub token: Option<Secret>,
    /// `EDGENT_ORIGINS`: extra allowed `Origin` values (exact, e.g. `https://app.example`),
    /// or `*` for any.
    pub origins: Vec<String>,
    /// Whether the listener is on loopback: the `Host` header is checked, and a caller
    /// without the token may do unpaid work.
    pub check_host: bool,
}

pub use crate::config::{check_bind, UnsafeBind};

/// Who a request comes from, as the guard found: put into the request's extensions for the
/// handlers. A request without it (the in-process calls of `/mcp`'s tools, behind a `/mcp`
/// that needed the token) is the owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Caller {
    /// Presented the token (or none is configured): may do anything.
    #[default]
    Owner,
    /// A loopback caller without the token: unpaid work only.
    Local,
}

impl Caller {
    /// The caller of a request, from its extensions.
    pub fn of(extensions: &axum::http::Extensions) -> Caller {
        extensions.get::<Caller>().copied().unwrap_or_default()
    }

    /// Whether this caller may start a delegation that spends USDC.
    pub fn may_spend(self) -> bool {
        self == Caller::Owner
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(&parts.extensions))
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// The dashboard page and the liveness probe: anyone past Host and Origin.
    Open,
    /// The model routes and `POST /delegate`: a loopback caller without the token may do
    /// unpaid work.
    Agent,
    /// Everything else: the token.
    Owner,
}

fn door(method: &Method, path: &str) -> Door {
    let read = method == Method::GET || method == Method::HEAD;
    if read && (path == "/" || path == "/healthz") {
        Door::Open
    } else if path.starts_with("/api/")
        || path.starts_with("/v1/")
        || (path == "/delegate" && method == Method::POST)
    {
        Door::Agent
    } else {
        Door::Owner
    }
}

/// Whether a `POST` to `path` must be `application/json`.
fn json_route(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path.starts_with("/api/") || path.starts_with("/v1/") || path == "/delegate")
}

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

/// Whether an `Origin` is allowed: the daemon's own (`http(s)://` + the request's `host`),
/// or one of `extra` (`*` for any).
pub fn allowed_origin(origin: &str, host: Option<&str>, extra: &[String]) -> bool {
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
    host.is_some_and(|h| !h.is_empty() && rest.eq_ignore_ascii_case(h.trim()))
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

/// The dashboard cookie's value, when the request carries it.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// Whether a token can be a cookie's value as it is.
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A foreign `Host` (403).
    Host(String),
    /// A foreign `Origin` (403).
    Origin(String),
    /// A `POST` that is not `application/json` (415).
    ContentType(String),
    /// A body over [`MAX_BODY_BYTES`] (413).
    TooLarge,
    /// No or a wrong token where the token is needed (401).
    Token,
}

impl Refusal {
    /// The status, the error code and the message.
    fn answer(&self) -> (StatusCode, &'static str, String) {
        match self {
            Refusal::Host(h) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Host {h:?} is not this machine's loopback"),
            ),
            Refusal::Origin(o) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Origin {o:?} is not this daemon's own origin nor in EDGENT_ORIGINS"),
            ),
            Refusal::ContentType(ct) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {ct:?}: this route takes application/json"),
            ),
            Refusal::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            Refusal::Token => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid Authorization: Bearer token (EDGENT_API_TOKEN or the file at EDGENT_API_TOKEN_PATH) is required".to_string(),
            ),
        }
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// Check one request: who it comes from, or why it is refused.
pub fn check(
    settings: &GuardSettings,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Caller, Refusal> {
    let host = header_text(headers, header::HOST);
    if settings.check_host {
        if let Some(h) = host {
            if !loopback_host(h) {
                return Err(Refusal::Host(h.chars().take(100).collect()));
            }
        }
    }
    let origin = header_text(headers, header::ORIGIN);
    if let Some(o) = origin {
        if !allowed_origin(o, host, &settings.origins) {
            return Err(Refusal::Origin(o.chars().take(100).collect()));
        }
    }
    if json_route(method, path) {
        let ct = header_text(headers, header::CONTENT_TYPE).unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(Refusal::ContentType(ct.chars().take(100).collect()));
        }
    }
    let too_large = header_text(headers, header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    if too_large {
        return Err(Refusal::TooLarge);
    }
    let Some(token) = &settings.token else {
        return Ok(Caller::Owner);
    };
    let token = token.expose().as_bytes();
    let read = method == Method::GET || method == Method::HEAD;
    let by_bearer = bearer(headers).is_some_and(|t| same_secret(t.as_bytes(), token));
    // The cookie rides along on any request the browser makes to this site: it counts for
    // reads, and for writes only from an allowed origin (checked above).
    let by_cookie = (read || origin.is_some())
        && cookie(headers).is_some_and(|t| same_secret(t.as_bytes(), token));
    if by_bearer || by_cookie {
        return Ok(Caller::Owner);
    }
    match door(method, path) {
        Door::Open => Ok(Caller::Local),
        Door::Agent if settings.check_host => Ok(Caller::Local),
        _ => Err(Refusal::Token),
    }
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
/// settings), taking bodies up to [`MAX_BODY_BYTES`].
pub fn guarded(router: Router, settings: GuardSettings) -> Router {
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(settings),
            guard,
        ))
}

/// `GET /?token=`: the dashboard's cookie and a redirect to `/`, or 401 for a wrong token.
fn login(settings: &GuardSettings, query: &str) -> Option<Response> {
    let given = query.split('&').find_map(|kv| kv.strip_prefix("token="))?;
    let ok = settings.token.as_ref().is_some_and(|t| {
        cookie_safe(t.expose()) && same_secret(given.as_bytes(), t.expose().as_bytes())
    });
    if !ok {
        tracing::warn!("dashboard login with a wrong token refused");
        let (status, code, message) = Refusal::Token.answer();
        return Some(refusal_response("/", status, code, &message));
    }
    let token = settings.token.as_ref()?.expose();
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}"
    );
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
}

/// The axum middleware: `from_fn_with_state(Arc<GuardSettings>, guard)`.
pub async fn guard(
    State(settings): State<Arc<GuardSettings>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    match check(&settings, req.method(), &path, req.headers()) {
        Ok(caller) => {
            if path == "/" && req.method() == Method::GET {
                if let Some(resp) = req.uri().query().and_then(|q| login(&settings, q)) {
                    return resp;
                }
            }
            req.extensions_mut().insert(caller);
            let resp = next.run(req).await;
            // A body over the limit without a Content-Length is found while it is read, by
            // the handler's extractor, which answers in plain text: answer in the API's shape.
            let json = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
                let (status, code, message) = Refusal::TooLarge.answer();
                return refusal_response(&path, status, code, &message);
            }
            resp
        }
        Err(r) => {
            let (status, code, message) = r.answer();
            tracing::warn!(%path, refusal = ?r, "request refused");
            refusal_response(&path, status, code, &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: Option<&str>) -> GuardSettings {
        GuardSettings {
            token: token.map(Secret::new),
            origins: vec![],
            check_host: true,
        }
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

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
    fn only_the_daemons_own_origin_is_allowed() {
        let own = Some("127.0.0.1:8080");
        assert!(allowed_origin("http://127.0.0.1:8080", own, &[]));
        assert!(allowed_origin("https://127.0.0.1:8080", own, &[]));
        // Another port, another loopback name: another origin.
        assert!(!allowed_origin("http://127.0.0.1:5173", own, &[]));
        assert!(!allowed_origin("http://localhost:8080", own, &[]));
        assert!(!allowed_origin(
            "http://localhost:3000",
            Some("localhost:8080"),
            &[]
        ));
        assert!(!allowed_origin("https://evil.com", own, &[]));
        assert!(!allowed_origin("null", own, &[]));
        assert!(!allowed_origin("http://127.0.0.1:8080", None, &[]));
        let extra = vec!["https://app.example".to_string()];
        assert!(allowed_origin("https://app.example", own, &extra));
        assert!(!allowed_origin("https://app.example.evil", own, &extra));
    }

    #[test]
    fn a_caller_without_the_token_may_use_the_model_routes_only() {
        let s = settings(Some("s3cret"));
        let post = Method::POST;
        let json = (header::CONTENT_TYPE, "application/json");
        for path in ["/api/generate", "/v1/chat/completions", "/delegate"] {
            assert_eq!(
                check(&s, &post, path, &headers(std::slice::from_ref(&json))),
                Ok(Caller::Local)
            );
            // OpenAI's clients send their api_key: a wrong token counts as none.
            let h = headers(&[json.clone(), (header::AUTHORIZATION, "Bearer sk-whatever")]);
            assert_eq!(check(&s, &post, path, &h), Ok(Caller::Local));
            let h = headers(&[json.clone(), (header::AUTHORIZATION, "Bearer s3cret")]);
            assert_eq!(check(&s, &post, path, &h), Ok(Caller::Owner));
        }
        for path in ["/status", "/jobs", "/metrics", "/mcp"] {
            assert_eq!(
                check(&s, &Method::GET, path, &headers(&[])),
                Err(Refusal::Token),
                "{path}"
            );
        }
        assert_eq!(
            check(&s, &Method::GET, "/", &headers(&[])),
            Ok(Caller::Local)
        );
        assert_eq!(
            check(&s, &Method::GET, "/healthz", &headers(&[])),
            Ok(Caller::Local)
        );
        // Not on loopback: the token or nothing but the open routes.
        let remote = GuardSettings {
            check_host: false,
            ..s.clone()
        };
        assert_eq!(
            check(
                &remote,
                &post,
                "/api/generate",
                &headers(std::slice::from_ref(&json))
            ),
            Err(Refusal::Token)
        );
        // No token configured: everyone is the owner.
        assert_eq!(
            check(&settings(None), &Method::GET, "/status", &headers(&[])),
            Ok(Caller::Owner)
        );
    }

    #[test]
    fn the_cookie_counts_for_reads_and_same_origin_writes() {
        let s = settings(Some("s3cret"));
        let c = (header::COOKIE, "a=b; edgent_token=s3cret");
        assert_eq!(
            check(
                &s,
                &Method::GET,
                "/status",
                &headers(std::slice::from_ref(&c))
            ),
            Ok(Caller::Owner)
        );
        let json = (header::CONTENT_TYPE, "application/json");
        // A write with the cookie but no Origin: not the owner (a local caller).
        assert_eq!(
            check(
                &s,
                &Method::POST,
                "/delegate",
                &headers(&[c.clone(), json.clone()])
            ),
            Ok(Caller::Local)
        );
        let own = (header::ORIGIN, "http://127.0.0.1:8080");
        assert_eq!(
            check(
                &s,
                &Method::POST,
                "/delegate",
                &headers(&[c.clone(), json, own])
            ),
            Ok(Caller::Owner)
        );
        let wrong = (header::COOKIE, "edgent_token=nope");
        assert_eq!(
            check(&s, &Method::GET, "/status", &headers(&[wrong])),
            Err(Refusal::Token)
        );
    }

    #[test]
    fn posts_must_be_json_and_fit() {
        let s = settings(None);
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let h = headers(&[(header::CONTENT_TYPE, ct)]);
            assert!(
                matches!(
                    check(&s, &Method::POST, "/api/generate", &h),
                    Err(Refusal::ContentType(_))
                ),
                "{ct}"
            );
        }
        assert!(matches!(
            check(&s, &Method::POST, "/delegate", &headers(&[])),
            Err(Refusal::ContentType(_))
        ));
        let h = headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")]);
        assert_eq!(
            check(&s, &Method::POST, "/v1/completions", &h),
            Ok(Caller::Owner)
        );
        let h = headers(&[
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_LENGTH, "999999999"),
        ]);
        assert_eq!(
            check(&s, &Method::POST, "/api/chat", &h),
            Err(Refusal::TooLarge)
        );
    }

    #[test]
    fn host_and_origin_come_first() {
        let s = settings(Some("s3cret"));
        let mut h = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.com"));
        assert!(matches!(
            check(&s, &Method::GET, "/status", &h),
            Err(Refusal::Origin(_))
        ));
        h.insert(header::HOST, HeaderValue::from_static("evil.com"));
        assert!(matches!(
            check(&s, &Method::GET, "/status", &h),
            Err(Refusal::Host(_))
        ));
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
