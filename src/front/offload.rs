//! The mesh side of the front door: a delegation through the requester, and the answer
//! as a stream of [`MeshEvent`]s that each API renders in its own format.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::protocol::JobId;
use crate::request::{DelegateError, DelegateRequest, DelegateResponse, ProviderInfo};

use super::stream::{StreamEvent, StreamSink};
use crate::requester::Requester;

/// One step of a mesh answer.
#[derive(Debug)]
pub enum MeshEvent {
    /// More text.
    Delta(String),
    /// The whole answer, after the last delta.
    Done(Box<DelegateResponse>),
    /// The delegation failed after it started.
    Failed(DelegateError),
}

/// A delegation under way: who runs it, and its events.
pub struct MeshAnswer {
    /// The job.
    pub job_id: JobId,
    /// Who runs it.
    pub provider: ProviderInfo,
    /// Deltas, then `Done` or `Failed`.
    pub events: BoxStream<'static, MeshEvent>,
}

/// Start a delegation through `requester`: streamed (`stream`), or answered whole. A
/// streamed request answers as soon as the task is with a provider, and its events follow
/// as the provider generates; if the agent goes away first (the events are dropped), the
/// job is cancelled (`task_cancel`).
pub async fn start(
    requester: Arc<Requester>,
    mut dreq: DelegateRequest,
    stream: bool,
) -> Result<MeshAnswer, DelegateError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    dreq.sink = stream.then(|| StreamSink { events: tx });
    let cancel_via = requester.clone();
    // Its own task: an agent that hangs up does not stop the delegation's bookkeeping; the
    // job is recorded to its end (a cancelled one too).
    let mut run: JoinHandle<Result<DelegateResponse, DelegateError>> =
        tokio::spawn(async move { requester.delegate(dreq).await });
    let joined = |r: Result<Result<DelegateResponse, DelegateError>, tokio::task::JoinError>| {
        r.map_err(|e| DelegateError::Internal(e.to_string()))?
    };
    if !stream {
        let res = joined((&mut run).await)?;
        return Ok(MeshAnswer {
            job_id: res.job_id,
            provider: res.provider.clone(),
            events: futures_util::stream::iter(vec![
                MeshEvent::Delta(res.output.clone()),
                MeshEvent::Done(Box::new(res)),
            ])
            .boxed(),
        });
    }
    // Wait for the task to reach a provider (or the delegation to fail before).
    let (job_id, provider) = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(StreamEvent::Started { job_id, provider }) => break (job_id, provider),
                Some(StreamEvent::Delta(_)) => {}
                None => {
                    let res = joined((&mut run).await)?;
                    break (res.job_id, res.provider);
                }
            },
            r = &mut run => {
                let res = joined(r)?;
                return Ok(MeshAnswer {
                    job_id: res.job_id,
                    provider: res.provider.clone(),
                    events: futures_util::stream::iter(vec![
                        MeshEvent::Delta(res.output.clone()),
                        MeshEvent::Done(Box::new(res)),
                    ])
                    .boxed(),
                });
            }
        }
    };
    let state = Streaming {
        rx,
        run: Some(run),
        sent: String::new(),
        guard: CancelOnDrop {
            requester: Some(cancel_via),
            job_id,
        },
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        let run = st.run.as_mut()?;
        let out = tokio::select! {
            biased;
            ev = st.rx.recv() => match ev {
                Some(StreamEvent::Delta(d)) => {
                    st.sent.push_str(&d);
                    vec![MeshEvent::Delta(d)]
                }
                // A failover to another provider: nothing to tell the agent.
                Some(StreamEvent::Started { .. }) => Vec::new(),
                None => {
                    let r = (&mut *run).await;
                    st.finish(r)
                }
            },
            r = &mut *run => st.finish(r),
        };
        Some((futures_util::stream::iter(out), st))
    })
    .flatten()
    .boxed();
    Ok(MeshAnswer {
        job_id,
        provider,
        events,
    })
}

/// A streamed delegation in flight, as the events stream holds it.
struct Streaming {
    rx: mpsc::UnboundedReceiver<StreamEvent>,
    run: Option<JoinHandle<Result<DelegateResponse, DelegateError>>>,
    /// The text the agent has been given.
    sent: String,
    guard: CancelOnDrop,
}

impl Streaming {
    /// The delegation ended: the text not streamed yet (the result is the whole output)
    /// and `Done`, or `Failed`.
    fn finish(
        &mut self,
        r: Result<Result<DelegateResponse, DelegateError>, tokio::task::JoinError>,
    ) -> Vec<MeshEvent> {
        self.run = None;
        self.guard.requester = None;
        let res = match r {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return vec![MeshEvent::Failed(e)],
            Err(e) => return vec![MeshEvent::Failed(DelegateError::Internal(e.to_string()))],
        };
        let mut out = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            if let StreamEvent::Delta(d) = ev {
                self.sent.push_str(&d);
                out.push(MeshEvent::Delta(d));
            }
        }
        match res.output.strip_prefix(self.sent.as_str()) {
            Some("") => {}
            Some(rest) => out.push(MeshEvent::Delta(rest.to_string())),
            None => {
                tracing::warn!(job = %res.job_id, "the streamed chunks are not a prefix of the result")
            }
        }
        out.push(MeshEvent::Done(Box::new(res)));
        out
    }
}

/// Cancels the job when the agent's stream is dropped before the delegation ended.
struct CancelOnDrop {
    requester: Option<Arc<Requester>>,
    job_id: JobId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(r) = self.requester.take() {
            let job_id = self.job_id;
            tokio::spawn(async move { r.cancel(job_id).await });
        }
    }
}

/// A paid answer's receipt, added as `edgent` to the last object of a mesh answer (Ollama's
/// `done` line, OpenAI's last chunk or whole object): the job, whether the provider's
/// proof checked, and the payment. The last object goes out only once the proof checked
/// (or the release is confirmed, with `wait: settled`). Unpaid answers carry none, so they
/// stay exactly in Ollama's and OpenAI's shapes; clients ignore the extra field.
pub fn receipt(r: &DelegateResponse) -> Option<Value> {
    if r.proof_verified.is_none() && r.payment.is_none() {
        return None;
    }
    Some(serde_json::json!({
        "job_id": r.job_id,
        "proof_verified": r.proof_verified,
        "payment": r.payment,
    }))
}

/// Now as RFC 3339 with nanoseconds, UTC, as Ollama writes `created_at`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Now as unix seconds (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-11-30T14:39:38.003478439Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
