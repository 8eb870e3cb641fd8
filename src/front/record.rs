//! A front-door request the local Ollama answered, recorded as a `local` job
//! ([`crate::jobs::Side::Local`]) so `/jobs` and the dashboard show every request, not only
//! those that went to the mesh: `running` when the answer starts, its time to first token
//! at the first bytes of the body, `completed` (or `failed` for an error status, or
//! `cancelled` when the agent hung up mid-answer) when the body ends.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;

use crate::jobs::{JobRecord, JobState, JobStore, Side};
use crate::protocol::JobId;
use crate::request::DelegateRequest;

/// Record `resp`, the local Ollama's answer to `req` (asked at `started`), as a local
/// job, and pass it on with its body watched to the end. A store failure is logged and
/// the answer still goes out.
pub fn local_answer(
    jobs: Arc<JobStore>,
    req: &DelegateRequest,
    started: Instant,
    resp: Response,
) -> Response {
    let job_id = JobId::new();
    let rec = JobRecord::new(
        job_id,
        Side::Local,
        &req.model,
        &crate::jobs::prompt_of(&req.prompt, req.messages.as_deref()),
        0,
    );
    if let Err(e) = jobs.insert(&rec) {
        tracing::warn!(job = %job_id, error = %e, "cannot record the local job");
        return resp;
    }
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let watch = Watch {
        jobs,
        job_id,
        started,
        first_token_ms: None,
        ended: false,
        error: (!status.is_success())
            .then(|| format!("the local Ollama answered HTTP {}", status.as_u16())),
    };
    let watched = futures_util::stream::unfold(
        (body.into_data_stream(), Some(watch)),
        |(mut stream, watch)| async move {
            let mut watch = watch?;
            match stream.next().await {
                Some(Ok(bytes)) => {
                    let ms = watch.elapsed();
                    watch.first_token_ms.get_or_insert(ms);
                    Some((Ok(bytes), (stream, Some(watch))))
                }
                Some(Err(e)) => {
                    watch.error = Some(format!("the local Ollama's answer broke: {e}"));
                    watch.ended = true;
                    Some((Err(e), (stream, None)))
                }
                None => {
                    watch.ended = true;
                    None
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(watched))
}

/// A local job's answer on its way to the agent; when dropped (the body ended, broke, or
/// the agent went away) it ends the job.
struct Watch {
    jobs: Arc<JobStore>,
    job_id: JobId,
    started: Instant,
    first_token_ms: Option<u64>,
    /// The body was read to its end (or broke): otherwise the agent went away.
    ended: bool,
    error: Option<String>,
}

impl Watch {
    fn elapsed(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (to, error) = match (&self.error, self.ended) {
            (Some(e), _) => (JobState::Failed, Some(e.clone())),
            (None, true) => (JobState::Completed, None),
            (None, false) => (
                JobState::Cancelled,
                Some("the agent went away before the answer ended".to_string()),
            ),
        };
        let total_ms = self.elapsed();
        let first = self.first_token_ms;
        let res = self.jobs.transition(&self.job_id, Side::Local, to, |r| {
            r.timings.first_token_ms = first;
            r.timings.total_ms = Some(total_ms);
            r.error = error;
        });
        if let Err(e) = res {
            tracing::debug!(job = %self.job_id, error = %e, "local job already ended");
        }
    }
}
