//! Streaming across the mesh: a task's output as it is generated.
//!
//! The provider batches the backend's deltas into `task_chunk`s (job id, sequence number,
//! text), at most one every [`FLUSH_EVERY`] or at [`FLUSH_BYTES`] ([`pump`]): the first
//! delta goes at once, alone, so the agent's time to first token is the provider's plus one
//! mesh hop, and so does any delta that comes a gap after the last chunk (a model slower
//! than about 29 tokens a second is sent token by token, with no wait); `task_result` still carries the whole output, so the proof and the paid
//! flow do not change. The requester puts the chunks back in order and drops duplicates
//! ([`Reorder`], [`ChunkRegistry`]) and hands the deltas to whoever asked for the stream
//! ([`StreamSink`]). When the agent goes away, the requester sends `task_cancel` and the
//! provider drops its backend request ([`CancelRegistry`]).
//!
//! # Failover of a streamed job
//!
//! A provider that fails before any of its text reached the agent is replaced by the next
//! candidate as for any job: the agent sees one answer. Once a delta went to the agent,
//! the job is never started again from its beginning (the agent would read the text
//! twice): a provider that died mid-answer is rescued instead, the next candidate
//! continuing from the text already passed on ([`ChunkRegistry::streamed_text`],
//! [`crate::requester::rescue`]). A stream no candidate can continue (none left, or a
//! result refused whole) ends with the API's error (`{"error": "..."}` as the last NDJSON
//! line, an `error` event before `data: [DONE]`, or `/delegate`'s `{error, detail}` line),
//! so the agent knows its answer is cut short and may ask again. [`ChunkRegistry::end_attempt`] makes
//! that call, and also refuses a failover for a job whose agent went away.
//!
//! Once the first chunk left, the provider fills any silence of
//! [`crate::mesh::heartbeat::STREAM_BEAT`] with a heartbeat, so the requester notices a
//! dead provider mid-stream within `STREAM_DEAD_MS` and rescues the stream.
//!
//! A paid job may run before its stake is mined ([`crate::paid::prestart`]): its output
//! then waits behind an [`OutputGate`], and no `task_chunk` leaves before the gate opens.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::axl::PeerKey;
use crate::inference::{Backend, GenerateOutput, GenerateRequest, InferenceError};
use crate::mesh::heartbeat::STREAM_BEAT;
use crate::mesh::Endpoint;
use crate::protocol::{BeatState, Heartbeat, JobId, Message, TaskChunk};
/// The stream's two ends, defined beside the request that carries the sink.
pub use crate::request::{StreamEvent, StreamSink};

/// The provider sends a job's `task_chunk`s at least this far apart (at most about 22 a
/// second, so that with the job's other messages, about 9 (the task, the result, their
/// acks, the beats), a stream of two seconds stays under issue 23's goal of 30 mesh
/// messages a second): a delta that comes later than that after the last chunk leaves at
/// once, one that comes sooner waits for the rest of the gap with whatever follows it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(45);
/// ... or once it holds this many bytes.
pub const FLUSH_BYTES: usize = 2048;
/// Opens (`true`) once the job's output may leave this node, or closes for good (`false`):
/// the stake a paid job started on never landed, and nothing of its output is ever sent.
pub type OutputGate = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
/// Chunks held for a gap in the sequence before the stream counts as broken.
const MAX_PENDING: usize = 4096;
/// Most bytes of one job's chunks the requester takes (threat model line 31); past that
/// its chunks are dropped and its result fails.
pub const MAX_STREAM_BYTES: usize = 8 << 20;

/// Puts one job's chunks back in sequence order, once each.
#[derive(Debug, Default)]
pub struct Reorder {
    next: u64,
    pending: BTreeMap<u64, String>,
}

impl Reorder {
    /// Take chunk `seq`; returns the deltas that are now in order (maybe none). A chunk
    /// already passed or already held is dropped.
    pub fn push(&mut self, seq: u64, delta: String) -> Vec<String> {
        if seq < self.next || self.pending.len() >= MAX_PENDING {
            return Vec::new();
        }
        self.pending.entry(seq).or_insert(delta);
        let mut out = Vec::new();
        while let Some(d) = self.pending.remove(&self.next) {
            out.push(d);
            self.next += 1;
        }
        out
    }
}

struct Streamed {
    /// The provider whose chunks are taken; none between attempts.
    provider: Option<PeerKey>,
    order: Reorder,
    sink: StreamSink,
    /// Some text went to the sink (so to the agent).
    delivered: bool,
    /// When the first text went to the sink.
    first_delta: Option<std::time::Instant>,
    /// The agent went away.
    cancelled: bool,
    /// Bytes of chunks taken (held or passed on).
    bytes: usize,
    /// Bytes passed on to the sink, and their keccak so far.
    passed: usize,
    /// The text passed on to the sink (at most [`MAX_STREAM_BYTES`]), for a rescue.
    text: String,
    hash: tiny_keccak::Keccak,
    /// A chunk went past [`MAX_STREAM_BYTES`].
    overflow: bool,
}

/// Whether a streamed job may go to another provider after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached the agent yet (or the job is not streamed): the next candidate may
    /// take it.
    Allowed,
    /// Part of the answer already reached the agent: continue it at the next candidate
    /// (a rescue), or end the stream with an error.
    Streamed,
    /// The agent went away: end the job cancelled.
    Cancelled,
}

/// Why a chunk was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkDrop {
    /// No streamed delegation waits for this job.
    Unknown,
    /// The sender is not the job's provider.
    Spoofed,
    /// The job's chunks passed [`MAX_STREAM_BYTES`].
    TooLarge,
}

/// The requester's streamed jobs: which provider each waits on, and where deltas go.
#[derive(Default)]
pub struct ChunkRegistry {
    inner: Mutex<HashMap<JobId, Streamed>>,
}

impl ChunkRegistry {
    /// Expect chunks of `job_id` from `provider`, for `sink` (replaces an earlier provider;
    /// a cancel already received is kept).
    pub fn register(&self, job_id: JobId, provider: PeerKey, sink: StreamSink) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let cancelled = m.get(&job_id).is_some_and(|s| s.cancelled);
        m.insert(
            job_id,
            Streamed {
                provider: Some(provider),
                order: Reorder::default(),
                sink,
                delivered: false,
                first_delta: None,
                cancelled,
                bytes: 0,
                passed: 0,
                text: String::new(),
                hash: tiny_keccak::Keccak::v256(),
                overflow: false,
            },
        );
    }

    /// The attempt at the job's provider ended without a result: its chunks are no longer
    /// taken, and the answer says whether another provider may have the job (see the
    /// module docs). A job that is not streamed may always go on.
    pub fn end_attempt(&self, job_id: &JobId) -> Retry {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = m.get_mut(job_id) else {
            return Retry::Allowed;
        };
        s.provider = None;
        if s.cancelled {
            Retry::Cancelled
        } else if s.delivered {
            Retry::Streamed
        } else {
            Retry::Allowed
        }
    }

    /// The agent of `job_id` went away: no other provider is to be tried for it.
    pub fn cancel(&self, job_id: &JobId) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get_mut(job_id) {
            s.cancelled = true;
        }
    }

    /// Whether the agent of `job_id` went away.
    pub fn cancelled(&self, job_id: &JobId) -> bool {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(job_id).is_some_and(|s| s.cancelled)
    }

    /// When the first text of `job_id` went to its agent, if it was streamed and some did.
    pub fn first_delta(&self, job_id: &JobId) -> Option<std::time::Instant> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(job_id).and_then(|s| s.first_delta)
    }

    /// The text of `job_id` passed on to its agent by its current (or last) attempt:
    /// where a rescue continues from ([`crate::requester::rescue`]).
    pub fn streamed_text(&self, job_id: &JobId) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(job_id).map(|s| s.text.clone()).unwrap_or_default()
    }

    /// How many streamed jobs are held (`/status`'s `streams_open`).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no streamed job is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop expecting chunks of `job_id`.
    pub fn remove(&self, job_id: &JobId) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(job_id);
    }

    /// A chunk arrived from `from`.
    pub fn on_chunk(&self, from: &PeerKey, c: TaskChunk) -> Result<(), ChunkDrop> {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let s = m.get_mut(&c.job_id).ok_or(ChunkDrop::Unknown)?;
        match &s.provider {
            Some(p) if p.same_node(from) => {}
            Some(_) => return Err(ChunkDrop::Spoofed),
            None => return Err(ChunkDrop::Unknown),
        }
        if s.overflow || s.bytes.saturating_add(c.delta.len()) > MAX_STREAM_BYTES {
            s.overflow = true;
            return Err(ChunkDrop::TooLarge);
        }
        s.bytes += c.delta.len();
        for d in s.order.push(c.seq, c.delta) {
            use tiny_keccak::Hasher;
            if !d.is_empty() && s.first_delta.is_none() {
                s.first_delta = Some(std::time::Instant::now());
            }
            s.delivered |= !d.is_empty();
            s.passed += d.len();
            s.hash.update(d.as_bytes());
            s.text.push_str(&d);
            let _ = s.sink.events.send(StreamEvent::Delta(d));
        }
        Ok(())
    }

    /// Whether `output`, a streamed job's result, extends the text already passed on to
    /// the agent (threat model line 31); a result that does not, or a stream past
    /// [`MAX_STREAM_BYTES`], fails the attempt (and so is not paid). A job that is not
    /// streamed passes.
    pub fn check_result(&self, job_id: &JobId, output: &str) -> Result<(), String> {
        use tiny_keccak::Hasher;
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = m.get(job_id) else {
            return Ok(());
        };
        if s.overflow {
            return Err(format!(
                "the streamed output passed {MAX_STREAM_BYTES} bytes"
            ));
        }
        let hash = |b: &[u8]| {
            let mut h = tiny_keccak::Keccak::v256();
            h.update(b);
            let mut out = [0u8; 32];
            h.finalize(&mut out);
            out
        };
        let mut streamed = [0u8; 32];
        s.hash.clone().finalize(&mut streamed);
        match output.as_bytes().get(..s.passed) {
            Some(prefix) if hash(prefix) == streamed => Ok(()),
            _ => Err("the result does not extend the text streamed to the agent".into()),
        }
    }
}

/// The provider's running jobs that their requester may cancel.
#[derive(Default)]
pub struct CancelRegistry {
    inner: Mutex<HashMap<JobId, (PeerKey, CancellationToken)>>,
}

impl CancelRegistry {
    /// A job started for `requester`: its token, cancelled by [`CancelRegistry::cancel`].
    pub fn start(&self, job_id: JobId, requester: PeerKey) -> CancellationToken {
        let token = CancellationToken::new();
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(job_id, (requester, token.clone()));
        token
    }

    /// The job ended.
    pub fn finish(&self, job_id: &JobId) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(job_id);
    }

    /// `from` asks to cancel `job_id`; true when it is that job's requester and the job
    /// was running.
    pub fn cancel(&self, from: &PeerKey, job_id: &JobId) -> bool {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(job_id) {
            Some((requester, token)) if requester.same_node(from) => {
                token.cancel();
                true
            }
            _ => false,
        }
    }
}

/// The provider's side: send the backend's deltas from `rx` to `to` as `task_chunk`s,
/// batched (the first one at once); returns when `rx` is closed and everything was sent
/// (or could not be). With a `gate`, nothing is sent before it opens (the deltas wait in
/// `rx`), and nothing at all when it closes.
pub async fn pump(
    endpoint: Arc<Endpoint>,
    to: PeerKey,
    job_id: JobId,
    mut rx: mpsc::UnboundedReceiver<String>,
    gate: Option<OutputGate>,
) -> (u64, String) {
    if let Some(gate) = gate {
        if !gate.await {
            tracing::debug!(job = %job_id, "output gate closed: no chunk sent");
            return (0, String::new());
        }
    }
    let mut seq = 0u64;
    let mut sent = String::new();
    let mut buf = String::new();
    let mut flush_at = tokio::time::Instant::now();
    // When the last chunk left (none yet: the first delta goes at once).
    let mut last_sent: Option<tokio::time::Instant> = None;
    // Once the stream began, a silence of STREAM_BEAT (a slow token, a tool call being
    // written) is filled with a heartbeat: the requester counts a streaming provider dead
    // after a short silence, and rescues the stream.
    let beat = Message::Heartbeat(Heartbeat {
        job_id,
        state: BeatState::Running,
        queue_position: None,
    });
    let mut last_beat: Option<tokio::time::Instant> = None;
    loop {
        let beat_at = last_sent.map(|t| last_beat.map_or(t, |b| b.max(t)) + STREAM_BEAT);
        let closed = tokio::select! {
            _ = sleep_until_some(beat_at), if buf.is_empty() => {
                if let Err(e) = endpoint.send(&to, &beat).await {
                    tracing::debug!(job = %job_id, error = %e, "stream heartbeat not sent");
                }
                last_beat = Some(tokio::time::Instant::now());
                continue;
            }
            d = rx.recv() => match d {
                Some(d) => {
                    let now = tokio::time::Instant::now();
                    if buf.is_empty() {
                        flush_at = last_sent.map_or(now, |t| (t + FLUSH_EVERY).max(now));
                    }
                    buf.push_str(&d);
                    if buf.len() < FLUSH_BYTES && flush_at > now {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = tokio::time::sleep_until(flush_at), if !buf.is_empty() => false,
        };
        if !buf.is_empty() {
            let delta = std::mem::take(&mut buf);
            let msg = Message::TaskChunk(TaskChunk {
                job_id,
                seq,
                delta: delta.clone(),
            });
            match endpoint.send(&to, &msg).await {
                Ok(()) => sent.push_str(&delta),
                Err(e) => tracing::debug!(job = %job_id, seq, error = %e, "task_chunk not sent"),
            }
            last_sent = Some(tokio::time::Instant::now());
            seq += 1;
        }
        if closed {
            return (seq, sent);
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An inference that failed or was stopped (cancelled, or its deadline passed), with the
/// text that had already left this node as `task_chunk`s (empty when none had): a paid
/// provider never declines once any of it left (docs/threat-model.md, lines 6-8).
#[derive(Debug)]
pub struct Stopped {
    /// Why it stopped.
    pub error: InferenceError,
    /// The text the requester was sent before it stopped.
    pub sent: String,
}

/// The provider's inference of one task: through the backend until `left` runs out or
/// `cancel` fires (the backend request is dropped then, which stops Ollama generating);
/// when `stream.0` is set, the deltas go to the requester `stream.1` as `task_chunk`s of
/// job `stream.2`, all sent before this returns (so before the `task_result`), none before
/// `gate` opens.
pub async fn infer(
    endpoint: &Arc<Endpoint>,
    backend: &dyn Backend,
    req: &GenerateRequest,
    stream: (bool, PeerKey, JobId),
    left: Duration,
    cancel: CancellationToken,
    gate: Option<OutputGate>,
) -> Result<GenerateOutput, Stopped> {
    let (streamed, to, job_id) = stream;
    let (tx, rx) = mpsc::unbounded_channel();
    let pumping = streamed.then(|| tokio::spawn(pump(endpoint.clone(), to, job_id, rx, gate)));
    let work = async {
        if streamed {
            backend.generate_stream(req, tx).await
        } else {
            drop(tx);
            backend.generate(req).await
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(left, work) => r.unwrap_or_else(|_| Err(InferenceError::Backend(
            "the deadline passed during inference".into(),
        ))),
        _ = cancel.cancelled() => Err(InferenceError::Cancelled),
    };
    let mut sent = String::new();
    if let Some(p) = pumping {
        match p.await {
            Ok((n, text)) => {
                tracing::debug!(job = %job_id, chunks = n, "stream sent");
                sent = text;
            }
            Err(e) => tracing::warn!(job = %job_id, error = %e, "the chunk pump failed"),
        }
    }
    outcome.map_err(|error| Stopped { error, sent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_puts_chunks_in_order_once() {
        let mut r = Reorder::default();
        assert_eq!(r.push(1, "b".into()), Vec::<String>::new());
        assert_eq!(r.push(1, "dup".into()), Vec::<String>::new());
        assert_eq!(r.push(0, "a".into()), vec!["a", "b"]);
        assert_eq!(r.push(0, "again".into()), Vec::<String>::new());
        assert_eq!(r.push(3, "d".into()), Vec::<String>::new());
        assert_eq!(r.push(2, "c".into()), vec!["c", "d"]);
    }

    #[test]
    fn chunks_only_from_the_jobs_provider() {
        let reg = ChunkRegistry::default();
        let job = JobId::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let provider = PeerKey([7; 32]);
        reg.register(job, provider, StreamSink { events: tx });
        let chunk = |seq: u64, d: &str| TaskChunk {
            job_id: job,
            seq,
            delta: d.into(),
        };
        assert_eq!(
            reg.on_chunk(&PeerKey([9; 32]), chunk(0, "x")),
            Err(ChunkDrop::Spoofed)
        );
        assert_eq!(reg.on_chunk(&provider, chunk(0, "hi")), Ok(()));
        assert!(matches!(rx.try_recv(), Ok(StreamEvent::Delta(d)) if d == "hi"));
        reg.remove(&job);
        assert_eq!(
            reg.on_chunk(&provider, chunk(1, "late")),
            Err(ChunkDrop::Unknown)
        );
    }

    #[test]
    fn no_failover_once_text_reached_the_agent() {
        let reg = ChunkRegistry::default();
        let (a, b) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = StreamSink { events: tx };
        let chunk = |job_id, seq: u64, d: &str| TaskChunk {
            job_id,
            seq,
            delta: d.into(),
        };
        // Not streamed: always allowed.
        assert_eq!(reg.end_attempt(&JobId::new()), Retry::Allowed);
        // Failed before any text: the next provider may take it, and the first one's
        // late chunks are dropped.
        let job = JobId::new();
        reg.register(job, a, sink.clone());
        assert_eq!(reg.end_attempt(&job), Retry::Allowed);
        assert_eq!(
            reg.on_chunk(&a, chunk(job, 0, "late")),
            Err(ChunkDrop::Unknown)
        );
        reg.register(job, b, sink.clone());
        assert_eq!(reg.on_chunk(&b, chunk(job, 0, "Once")), Ok(()));
        assert!(matches!(rx.try_recv(), Ok(StreamEvent::Delta(d)) if d == "Once"));
        // Text went out: no failover.
        assert_eq!(reg.end_attempt(&job), Retry::Streamed);
        assert_eq!(
            reg.on_chunk(&b, chunk(job, 1, " upon")),
            Err(ChunkDrop::Unknown)
        );
        // The agent went away: cancelled wins, and survives a new registration.
        let gone = JobId::new();
        reg.register(gone, a, sink.clone());
        reg.cancel(&gone);
        reg.register(gone, b, sink);
        assert!(reg.cancelled(&gone));
        assert_eq!(reg.end_attempt(&gone), Retry::Cancelled);
    }

    #[test]
    fn a_result_must_extend_the_streamed_text_and_the_stream_is_bounded() {
        let reg = ChunkRegistry::default();
        let (job, p) = (JobId::new(), PeerKey([1; 32]));
        let (tx, _rx) = mpsc::unbounded_channel();
        reg.register(job, p, StreamSink { events: tx });
        let chunk = |seq, delta: &str| TaskChunk {
            job_id: job,
            seq,
            delta: delta.into(),
        };
        reg.on_chunk(&p, chunk(0, "Hello, ")).unwrap();
        assert!(reg.check_result(&job, "Hello, world").is_ok());
        assert!(reg.check_result(&job, "Goodbye, world").is_err());
        assert!(
            reg.check_result(&job, "Hello").is_err(),
            "shorter than the stream"
        );
        let big = "x".repeat(MAX_STREAM_BYTES);
        assert_eq!(reg.on_chunk(&p, chunk(1, &big)), Err(ChunkDrop::TooLarge));
        assert!(reg.check_result(&job, &format!("Hello, {big}")).is_err());
        assert!(reg.check_result(&JobId::new(), "not streamed").is_ok());
    }

    #[test]
    fn only_the_requester_cancels() {
        let reg = CancelRegistry::default();
        let job = JobId::new();
        let requester = PeerKey([3; 32]);
        let token = reg.start(job, requester);
        assert!(!reg.cancel(&PeerKey([4; 32]), &job));
        assert!(!token.is_cancelled());
        assert!(reg.cancel(&requester, &job));
        assert!(token.is_cancelled());
        reg.finish(&job);
        assert!(!reg.cancel(&requester, &job));
    }
}
