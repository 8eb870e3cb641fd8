//! HTTP client for AXL's local API: `GET /topology`, `POST /send`, `GET /recv`.
//!
//! The mapping from HTTP to [`AxlError`] follows AXL's handlers (`api/send.go`,
//! `api/recv.go`): 400 is a bad peer id, 502 an unreachable peer, a refused or timed-out
//! connection means the local node is down, and anything else is an unexpected answer.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;

use super::{AxlError, Inbound, PeerKey, Topology, Transport};

/// AXL's default maximum message size (`max_message_size`, 16 MiB). A receiving node
/// closes the connection on anything larger, so the client refuses it up front.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Header carrying the destination's full public key on `POST /send`.
pub const DESTINATION_HEADER: &str = "X-Destination-Peer-Id";
/// Header carrying the sender's partial key on `GET /recv`.
pub const FROM_HEADER: &str = "X-From-Peer-Id";
/// Header in which `POST /send` reports the bytes written.
pub const SENT_BYTES_HEADER: &str = "X-Sent-Bytes";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `/topology` and `/recv` answer from memory: a slow answer means the node is stuck.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);
/// `/send` dials the peer across the mesh before it answers, and may carry 16 MiB.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error body is kept in [`AxlError::Http`].
const BODY_EXCERPT: usize = 200;

/// Client for one AXL node's local HTTP API. Cheap to clone (shares its connection pool).
#[derive(Debug, Clone)]
pub struct AxlClient {
    base: String,
    http: reqwest::Client,
}

impl AxlClient {
    /// A client for the node at `base_url`, e.g. `http://127.0.0.1:9002`.
    pub fn new(base_url: &str) -> Result<AxlClient, AxlError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| AxlError::InvalidUrl(format!("{base:?}: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(AxlError::InvalidUrl(format!(
                "{base:?}: must be http:// (the API is local)"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // The API is on loopback: never route it through an HTTP proxy from the env.
            .no_proxy()
            .build()
            .map_err(|e| AxlError::InvalidUrl(format!("cannot build an HTTP client: {e}")))?;
        Ok(AxlClient { base, http })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path` on one of the routes AXL answers from memory (`/topology`, `/recv`).
    async fn get_local(&self, path: &str) -> Result<reqwest::Response, AxlError> {
        self.http
            .get(self.url(path))
            .timeout(LOCAL_TIMEOUT)
            .send()
            .await
            .map_err(|e| down(path, e))
    }
}

/// A transport-level failure: the node is not answering (refused, reset, timed out).
fn down(path: &str, e: reqwest::Error) -> AxlError {
    let why = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    AxlError::Down(format!("{path}: {why}: {e}"))
}

async fn excerpt(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let mut t: String = text.trim().chars().take(BODY_EXCERPT).collect();
    if text.trim().chars().count() > BODY_EXCERPT {
        t.push('…');
    }
    t
}

#[async_trait]
impl Transport for AxlClient {
    async fn topology(&self) -> Result<Topology, AxlError> {
        let resp = self.get_local("/topology").await?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(AxlError::Http {
                status: status.as_u16(),
                body: excerpt(resp).await,
            });
        }
        let raw = resp.bytes().await.map_err(|e| down("/topology", e))?;
        serde_json::from_slice(&raw).map_err(|e| {
            tracing::warn!(target: "axl", error = %e, "AXL /topology answered malformed JSON");
            AxlError::BadResponse(format!("/topology JSON: {e}"))
        })
    }

    async fn send(&self, to: &PeerKey, body: Bytes) -> Result<(), AxlError> {
        let size = body.len();
        if size > MAX_MESSAGE_BYTES {
            return Err(AxlError::TooLarge {
                size,
                max: MAX_MESSAGE_BYTES,
            });
        }
        let resp = self
            .http
            .post(self.url("/send"))
            .header(DESTINATION_HEADER, to.to_hex())
            .timeout(SEND_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| down("/send", e))?;
        let status = resp.status();
        match status {
            StatusCode::OK => {
                let sent = resp
                    .headers()
                    .get(SENT_BYTES_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<usize>().ok());
                match sent {
                    Some(n) if n == size => Ok(()),
                    Some(n) => {
                        tracing::warn!(target: "axl", peer = %to.short(), sent = n, size, "AXL sent fewer bytes than given");
                        Err(AxlError::BadResponse(format!(
                            "/send wrote {n} of {size} bytes"
                        )))
                    }
                    None => {
                        // The message went out (AXL only answers 200 after writing it);
                        // a missing count is odd but not a failure of the send.
                        tracing::debug!(target: "axl", "AXL /send answered 200 without {SENT_BYTES_HEADER}");
                        Ok(())
                    }
                }
            }
            StatusCode::BAD_REQUEST => Err(AxlError::BadPeerId(excerpt(resp).await)),
            StatusCode::BAD_GATEWAY => Err(AxlError::Unreachable(excerpt(resp).await)),
            other => Err(AxlError::Http {
                status: other.as_u16(),
                body: excerpt(resp).await,
            }),
        }
    }

    async fn recv(&self) -> Result<Option<Inbound>, AxlError> {
        let resp = self.get_local("/recv").await?;
        match resp.status() {
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::OK => {
                let from = resp
                    .headers()
                    .get(FROM_HEADER)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                // Read the body first: the message is already off AXL's queue either way.
                let body = resp.bytes().await.map_err(|e| down("/recv", e))?;
                let Some(from) = from else {
                    tracing::warn!(target: "axl", bytes = body.len(), "AXL /recv message without {FROM_HEADER}; dropped");
                    return Err(AxlError::BadResponse(format!(
                        "/recv without {FROM_HEADER} ({} bytes dropped)",
                        body.len()
                    )));
                };
                match PeerKey::from_hex(&from) {
                    Ok(from) => Ok(Some(Inbound { from, body })),
                    Err(e) => {
                        tracing::warn!(target: "axl", error = %e, bytes = body.len(), "AXL /recv message with a garbled {FROM_HEADER}; dropped");
                        Err(AxlError::BadResponse(format!(
                            "/recv {FROM_HEADER}: {e} ({} bytes dropped)",
                            body.len()
                        )))
                    }
                }
            }
            other => Err(AxlError::Http {
                status: other.as_u16(),
                body: excerpt(resp).await,
            }),
        }
    }
}
