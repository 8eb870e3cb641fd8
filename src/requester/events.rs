//! A delegation as a stream of events: what the front door and `/delegate/stream` serve.
//! A streamed request answers as soon as the task is with a provider, and its text follows
//! as the provider generates; if the reader goes away first, the job is cancelled
//! (`task_cancel`).

use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Requester;
use crate::protocol::JobId;
use crate::request::{DelegateError, DelegateRequest, DelegateResponse, ProviderInfo};
use crate::stream::{StreamEvent, StreamSink};

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

impl MeshAnswer {
    /// A delegation answered whole: its text as one delta, then `Done`.
    fn whole(res: DelegateResponse) -> MeshAnswer {
        MeshAnswer {
            job_id: res.job_id,
            provider: res.provider.clone(),
            events: futures_util::stream::iter(vec![
                MeshEvent::Delta(res.output.clone()),
                MeshEvent::Done(Box::new(res)),
            ])
            .boxed(),
        }
    }
}

/// Start a delegation through `requester`: streamed (`stream`), or answered whole.
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
        return Ok(MeshAnswer::whole(joined((&mut run).await)?));
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
                return Ok(MeshAnswer::whole(joined(r)?));
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
