//! Settlement through KeeperHub's Direct Execution API: KeeperHub's managed wallet is the
//! escrow's operator and signs `release`/`reject` for us.
//!
//! `POST {KEEPERHUB_API_URL}/api/execute/contract-call` with `functionArgs` as a JSON
//! array *string*, then `GET /api/execute/{executionId}/status` every `KEEPERHUB_POLL_SECS`
//! until `completed` or `failed`. 429 waits for `Retry-After`; 5xx and network errors are
//! retried until the overall timeout; 401 and 422 (spending cap) stop at once. Before
//! every POST the stake is read from the chain, so a retry never releases twice.
//!
//! Every POST carries an `Idempotency-Key` ([`idempotency_key`]): one per logical action
//! (the function and the job id), so a retry, also after a crash or from another settler,
//! sends the same key. KeeperHub then answers the earlier execution's result again
//! (`idempotentReplay: true`) instead of executing twice, or 409 `idempotency_in_progress`
//! while the first request is still running (the settler polls and posts again). A POST
//! whose answer is lost (504, or a connection dropped after sending) is simply posted again
//! under its key. A replayed *failure* with the stake still open on chain means nothing
//! was executed: the settler moves to the key's next generation (`...-2`) and posts anew.

use std::time::Duration;

use alloy::primitives::{TxHash, B256};
use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error::ChainError;
use super::escrow::{EscrowClient, StakeInfo, StakeStatus};
use super::settings::{ChainConfigError, ChainSettings, Secret};
use super::settle::{
    already_settled, plan_reject, plan_release, Plan, SettleError, Settlement, Settler,
};
use crate::backoff::Backoff;

/// How many key generations one settlement moves through (each after a replayed failure
/// with the stake still open) before it gives up with the last failure.
const MAX_KEY_GENERATIONS: u32 = 8;

/// Longest `Retry-After` we honour in one wait (longer values are capped, not trusted).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait after the first failed POST (a 5xx or a network error); it doubles with each
/// failure in a row, up to [`TRANSIENT_MAX_WAIT`].
const TRANSIENT_FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between POSTs that failed.
const TRANSIENT_MAX_WAIT: Duration = Duration::from_secs(5);

/// The two escrow functions KeeperHub calls, as the ABI it is sent.
const RELEASE_ABI: &str = r#"[{"type":"function","name":"release","stateMutability":"nonpayable","inputs":[{"name":"jobId","type":"bytes32"},{"name":"outputHash","type":"bytes32"}],"outputs":[]}]"#;
const REJECT_ABI: &str = r#"[{"type":"function","name":"reject","stateMutability":"nonpayable","inputs":[{"name":"jobId","type":"bytes32"}],"outputs":[]}]"#;

/// Settles through KeeperHub.
#[derive(Debug, Clone)]
pub struct KeeperHubSettler {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    network: String,
    escrow: EscrowClient,
    poll: Duration,
    timeout: Duration,
}

/// A final KeeperHub answer for one execution.
enum Outcome {
    Completed(Option<TxHash>),
    Failed(String),
}

impl KeeperHubSettler {
    /// Connects a read-only escrow client (for `getStake`) and reads the KeeperHub settings.
    pub async fn connect(settings: &ChainSettings) -> Result<Self, ChainError> {
        let escrow = EscrowClient::connect(settings, None).await?;
        Ok(Self::new(escrow, settings)?)
    }

    /// Uses `escrow` for reads; needs `KEEPERHUB_API_KEY`.
    pub fn new(escrow: EscrowClient, settings: &ChainSettings) -> Result<Self, ChainConfigError> {
        let api_key = settings
            .keeperhub_api_key
            .clone()
            .ok_or(ChainConfigError::Missing("KEEPERHUB_API_KEY"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ChainConfigError::Invalid {
                var: "KEEPERHUB_API_URL",
                value: settings.keeperhub_url.clone(),
                expected: if e.is_builder() {
                    "a URL the HTTP client can use"
                } else {
                    "a reachable URL"
                },
            })?;
        Ok(Self {
            http,
            base_url: settings.keeperhub_url.trim_end_matches('/').to_string(),
            api_key,
            network: settings.keeperhub_network.clone(),
            escrow,
            poll: settings.keeperhub_poll,
            timeout: settings.keeperhub_timeout,
        })
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let key = self.api_key.expose();
        req.header("Authorization", format!("Bearer {key}"))
            .header("X-API-Key", key)
    }

    /// Runs one settlement: plan from the stake, POST, poll, confirm on chain. Retries
    /// the POST (re-planning first) after a 429, a 5xx or a network error.
    async fn settle(
        &self,
        job_id: B256,
        function: &'static str,
        args: Vec<String>,
        abi: &'static str,
        plan: impl Fn(&StakeInfo) -> Result<Plan, SettleError> + Send + Sync,
        want: StakeStatus,
    ) -> Result<Settlement, SettleError> {
        let deadline = Instant::now() + self.timeout;
        let body = json!({
            "contractAddress": self.escrow.escrow_address().to_string(),
            "network": self.network,
            "functionName": function,
            "functionArgs": serde_json::to_string(&args).unwrap_or_default(),
            "abi": abi,
        });
        let mut backoff = Backoff::new(TRANSIENT_FIRST_WAIT, TRANSIENT_MAX_WAIT);
        let mut generation = 1;
        loop {
            let stake = self.escrow.get_stake(job_id).await?;
            if let Plan::Done(status) = plan(&stake)? {
                tracing::info!(%job_id, %status, function, "KeeperHub: already settled, nothing to send");
                return Ok(already_settled(&self.escrow, job_id, status).await);
            }
            let key = idempotency_key(function, job_id, generation);
            let wait = match self.post(&body, &key).await {
                Ok(PostReply::Accepted {
                    execution_id,
                    outcome,
                    replayed,
                }) => {
                    tracing::info!(%job_id, function, %execution_id, replayed, "KeeperHub accepted the call");
                    let outcome = match outcome {
                        Some(o) => o,
                        None => self.poll_status(&execution_id, deadline).await?,
                    };
                    let done = self
                        .finish(job_id, &execution_id, outcome, &plan, want)
                        .await;
                    match done {
                        Err(SettleError::ExecutionFailed { .. })
                            if replayed && generation < MAX_KEY_GENERATIONS =>
                        {
                            // An earlier execution under this key failed and the stake
                            // is still open: nothing ran, so a new key may post again.
                            tracing::info!(%job_id, function, %key, "KeeperHub replayed an earlier failure; posting under the next key");
                            generation += 1;
                            continue;
                        }
                        other => return other,
                    }
                }
                Ok(PostReply::RetryAfter(d)) => {
                    tracing::warn!(%job_id, wait = ?d, "KeeperHub rate limit (429); waiting");
                    d
                }
                Ok(PostReply::InProgress) => {
                    tracing::info!(%job_id, function, %key, "KeeperHub: the call under this key is still running; polling");
                    self.poll
                }
                Ok(PostReply::Lost(why)) => {
                    tracing::warn!(%job_id, %why, function, %key, "KeeperHub's answer was lost; posting again under the same key");
                    self.poll
                }
                Ok(PostReply::Transient(why)) => {
                    tracing::warn!(%job_id, %why, "KeeperHub call failed; retrying");
                    backoff.next_wait()
                }
                Err(e) => return Err(e),
            };
            if Instant::now() + wait >= deadline {
                return Err(SettleError::Timeout(self.timeout));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&self, body: &Value, key: &str) -> Result<PostReply, SettleError> {
        let url = format!("{}/api/execute/contract-call", self.base_url);
        let req = self
            .authed(self.http.post(&url))
            .header("Idempotency-Key", key);
        let resp = match req.json(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Ok(PostReply::Transient(e.to_string())),
            Err(e) => return Ok(PostReply::Lost(e.to_string())),
        };
        let (status, retry_after, text) = read_answer(resp).await;
        match status {
            s if s.is_success() => {
                let v = json_of("contract-call", &text)?;
                let id = field(&v, "executionId")
                    .and_then(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .or_else(|| Some(x.to_string()))
                    })
                    .ok_or_else(|| {
                        SettleError::Http(format!(
                            "contract-call answer has no executionId: {}",
                            clip(&text)
                        ))
                    })?;
                let replayed = field(&v, "idempotentReplay").and_then(Value::as_bool) == Some(true);
                Ok(PostReply::Accepted {
                    execution_id: id,
                    outcome: outcome_of(&v),
                    replayed,
                })
            }
            StatusCode::TOO_MANY_REQUESTS => Ok(PostReply::RetryAfter(retry_after)),
            StatusCode::CONFLICT if conflict_code(&text) == Some("idempotency_in_progress") => {
                Ok(PostReply::InProgress)
            }
            StatusCode::UNAUTHORIZED => Err(SettleError::Unauthorized),
            StatusCode::UNPROCESSABLE_ENTITY => Err(SettleError::SpendingCap(clip(&text))),
            StatusCode::GATEWAY_TIMEOUT => {
                Ok(PostReply::Lost(format!("HTTP 504: {}", clip(&text))))
            }
            s if s.is_server_error() => {
                Ok(PostReply::Transient(format!("HTTP {s}: {}", clip(&text))))
            }
            s => Err(SettleError::KeeperHubRejected {
                status: s.as_u16(),
                body: clip(&text),
            }),
        }
    }

    async fn poll_status(
        &self,
        execution_id: &str,
        deadline: Instant,
    ) -> Result<Outcome, SettleError> {
        let url = format!("{}/api/execute/{execution_id}/status", self.base_url);
        loop {
            let mut wait = self.poll;
            match self.authed(self.http.get(&url)).send().await {
                Ok(resp) => {
                    let (status, ra, text) = read_answer(resp).await;
                    match status {
                        s if s.is_success() => {
                            if let Some(o) = outcome_of(&json_of("status", &text)?) {
                                return Ok(o);
                            }
                        }
                        StatusCode::TOO_MANY_REQUESTS => wait = wait.max(ra),
                        StatusCode::UNAUTHORIZED => return Err(SettleError::Unauthorized),
                        s if s.is_server_error() => {
                            tracing::warn!(execution_id, %s, "KeeperHub status poll failed; retrying")
                        }
                        s => {
                            return Err(SettleError::KeeperHubRejected {
                                status: s.as_u16(),
                                body: clip(&text),
                            })
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(execution_id, error = %e, "KeeperHub status poll failed; retrying")
                }
            }
            if Instant::now() + wait >= deadline {
                return Err(SettleError::Timeout(self.timeout));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn finish(
        &self,
        job_id: B256,
        execution_id: &str,
        outcome: Outcome,
        plan: &(impl Fn(&StakeInfo) -> Result<Plan, SettleError> + Send + Sync),
        want: StakeStatus,
    ) -> Result<Settlement, SettleError> {
        // The chain is the source of truth: a "failed" execution may still have been
        // preceded by someone else's settlement, and "completed" must show on chain.
        let stake = self.escrow.get_stake(job_id).await?;
        match outcome {
            Outcome::Completed(tx_hash) => {
                if stake.status != want {
                    return Err(SettleError::NotApplied {
                        execution_id: execution_id.to_string(),
                        status: stake.status,
                    });
                }
                let explorer_url = tx_hash.map(|h| self.escrow.tx_url(h));
                tracing::info!(%job_id, execution_id, tx = ?tx_hash, url = ?explorer_url,
                    status = %stake.status, "KeeperHub execution completed");
                Ok(Settlement {
                    tx_hash,
                    explorer_url,
                    status: stake.status,
                    sent: true,
                })
            }
            Outcome::Failed(error) => {
                if let Ok(Plan::Done(status)) = plan(&stake) {
                    tracing::info!(%job_id, execution_id, %status, "KeeperHub failed but the job is already settled");
                    return Ok(already_settled(&self.escrow, job_id, status).await);
                }
                tracing::warn!(%job_id, execution_id, %error, "KeeperHub execution failed");
                Err(SettleError::ExecutionFailed {
                    execution_id: execution_id.to_string(),
                    error,
                })
            }
        }
    }
}

enum PostReply {
    /// An execution id, its outcome when the answer already holds it, and whether the
    /// answer replays an earlier request under the same key.
    Accepted {
        execution_id: String,
        outcome: Option<Outcome>,
        replayed: bool,
    },
    RetryAfter(Duration),
    /// 409 `idempotency_in_progress`: the first request under this key is still running.
    InProgress,
    /// Refused before anything was queued (a 5xx other than 504, no connection).
    Transient(String),
    /// The answer was lost: the call may have been queued.
    Lost(String),
}

/// The `Idempotency-Key` of one logical action: the escrow function and the job id, so
/// every retry of it (after a lost answer, a crash, or from another settler) sends the
/// same key; `generation` moves on only after a replayed failure that left the stake open.
pub fn idempotency_key(function: &str, job_id: B256, generation: u32) -> String {
    format!("edgent-{function}-{job_id:#x}-{generation}")
}

/// The `code` of a 409 answer (`idempotency_in_progress` or `idempotency_conflict`).
fn conflict_code(text: &str) -> Option<&'static str> {
    let v: Value = serde_json::from_str(text).ok()?;
    match field(&v, "code")?.as_str()? {
        "idempotency_in_progress" => Some("idempotency_in_progress"),
        "idempotency_conflict" => Some("idempotency_conflict"),
        _ => None,
    }
}

/// Looks a field up at the top level or under `data` (KeeperHub wraps some answers).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name)
        .or_else(|| v.get("data").and_then(|d| d.get(name)))
        .filter(|x| !x.is_null())
}

/// The final outcome in a contract-call or status answer, if it is final.
fn outcome_of(v: &Value) -> Option<Outcome> {
    let status = field(v, "status")?.as_str()?.to_ascii_lowercase();
    match status.as_str() {
        "completed" | "success" => {
            let hash = field(v, "transactionHash")
                .or_else(|| field(v, "txHash"))
                .and_then(Value::as_str)
                .or_else(|| {
                    field(v, "transactionHashes")
                        .and_then(|a| a.get(0))
                        .and_then(|h| h.get("hash"))
                        .and_then(Value::as_str)
                })
                .and_then(|s| s.parse::<TxHash>().ok());
            Some(Outcome::Completed(hash))
        }
        "failed" | "error" | "cancelled" => {
            let error = field(v, "error")
                .map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .unwrap_or_else(|| format!("status {status}"));
            Some(Outcome::Failed(error))
        }
        _ => None,
    }
}

/// One KeeperHub answer, read whole: its status, its `Retry-After` ([`retry_after`]) and
/// its body (empty when it could not be read).
async fn read_answer(resp: reqwest::Response) -> (StatusCode, Duration, String) {
    let status = resp.status();
    let retry_after = retry_after(&resp);
    (status, retry_after, resp.text().await.unwrap_or_default())
}

/// A successful answer's body as JSON; `call` names the call in the error.
fn json_of(call: &str, text: &str) -> Result<Value, SettleError> {
    serde_json::from_str(text)
        .map_err(|_| SettleError::Http(format!("{call} answered non-JSON: {}", clip(text))))
}

fn retry_after(resp: &reqwest::Response) -> Duration {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(1))
        .min(MAX_RETRY_AFTER)
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// 0x-prefixed 32-byte hex, as KeeperHub expects bytes32 arguments.
fn hex32(b: B256) -> String {
    format!("{b:#x}")
}

#[async_trait]
impl Settler for KeeperHubSettler {
    async fn release(&self, job_id: B256, output_hash: B256) -> Result<Settlement, SettleError> {
        self.settle(
            job_id,
            "release",
            vec![hex32(job_id), hex32(output_hash)],
            RELEASE_ABI,
            move |s| plan_release(job_id, s, output_hash),
            StakeStatus::Released,
        )
        .await
    }

    async fn reject(&self, job_id: B256) -> Result<Settlement, SettleError> {
        self.settle(
            job_id,
            "reject",
            vec![hex32(job_id)],
            REJECT_ABI,
            move |s| plan_reject(job_id, s),
            StakeStatus::Rejected,
        )
        .await
    }

    fn name(&self) -> &'static str {
        "keeperhub"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes32_args_are_full_width_hex() {
        let mut b = [0u8; 32];
        b[31] = 1;
        let s = hex32(B256::from(b));
        assert_eq!(s.len(), 66);
        assert!(s.starts_with("0x000"));
        assert!(s.ends_with('1'));
    }

    #[test]
    fn one_key_per_job_and_action() {
        let j = B256::repeat_byte(0xab);
        let k = idempotency_key("release", j, 1);
        assert_eq!(k, format!("edgent-release-{j:#x}-1"));
        assert_ne!(k, idempotency_key("reject", j, 1));
        assert_ne!(k, idempotency_key("release", j, 2));
        assert_ne!(k, idempotency_key("release", B256::repeat_byte(0xac), 1));
    }

    #[test]
    fn tells_in_progress_from_conflict() {
        let busy = r#"{"error":"busy","code":"idempotency_in_progress","retryable":true}"#;
        let other = r#"{"error":"reused","code":"idempotency_conflict","retryable":false}"#;
        assert_eq!(conflict_code(busy), Some("idempotency_in_progress"));
        assert_eq!(conflict_code(other), Some("idempotency_conflict"));
        assert_eq!(conflict_code("not json"), None);
    }

    #[test]
    fn reads_wrapped_and_flat_status() {
        let flat = json!({"status": "completed", "transactionHash": format!("{:#x}", B256::repeat_byte(7))});
        assert!(matches!(
            outcome_of(&flat),
            Some(Outcome::Completed(Some(_)))
        ));
        let wrapped = json!({"data": {"status": "failed", "error": "reverted"}});
        assert!(matches!(outcome_of(&wrapped), Some(Outcome::Failed(e)) if e == "reverted"));
        assert!(outcome_of(&json!({"status": "running"})).is_none());
    }
}
