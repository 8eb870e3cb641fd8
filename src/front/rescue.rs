//! Rescue of the local Ollama's stream: when its runner dies after text reached the agent
//! (killed by the kernel out of memory, crashed), the mesh continues the answer from that
//! text, in the same stream and in the API's own format.
//!
//! The local answer passes through line by line, unchanged, while its text is noted
//! (`response` or `message.content` of Ollama's NDJSON lines, `choices[0].delta.content` or
//! `choices[0].text` of OpenAI's SSE chunks, one token a line). A stream that breaks (an
//! `{"error": ...}` line, or the empty chunk Ollama's OpenAI layer makes of it, held back,
//! or a body that fails) goes on as a
//! delegation of the continuation
//! ([`crate::requester::rescue::continuation`]: the chat, then the delivered text as the
//! assistant's open turn), pinned to the local model's digest ([`super::pin`]), and its
//! text follows in the local stream's format (the SSE chunks keep the local `id`). The
//! last line counts the whole answer: `eval_count` is the local tokens plus the
//! provider's, `prompt_eval_count` the provider's less the local tokens it read again.
//!
//! Not rescued: a request with fields the mesh cannot carry, `EDGENT_OFFLOAD=never`, an
//! answer that is not streamed (Ollama answers it whole or not at all), and a stream that
//! ends without its last line but with no error (Ollama v0.17.4 so ends, on purpose, a
//! generation that repeats one token too often: it stays as Ollama ended it). The response's headers went out with the local answer, so
//! they still say `X-Edgent-Ran-On: local`; the provider's job is on `/jobs`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::agent::{AgentRequest, Api};
use super::{ollama, openai, FrontDoor, OffloadMode};
use crate::requester::events::MeshEvent;

/// Longest line held while it is read; a longer one ends the watch (passed on as it is).
const MAX_LINE: usize = 1 << 20;

/// Lines queued for the agent: the local stream waits when the agent reads slowly.
const QUEUE: usize = 64;

/// What the local stream showed so far.
#[derive(Default)]
struct Seen {
    /// The text that reached the agent.
    text: String,
    /// Lines that carried text: Ollama streams one token a line.
    tokens: u64,
    /// The SSE chunks' `id`.
    id: Option<String>,
    /// The answer ended (a `done` line, `data: [DONE]`).
    done: bool,
}

/// What one line of the local stream is.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Pass it on.
    Pass,
    /// An error: held back, the stream is rescued.
    Error(String),
}

impl Seen {
    /// Read one line (without its `\n`) of `api`'s stream.
    fn read(&mut self, api: Api, line: &[u8]) -> Line {
        let t = line.trim_ascii();
        let json = if api.openai() {
            match t.strip_prefix(b"data:") {
                Some(d) => d.trim_ascii(),
                None => return Line::Pass,
            }
        } else {
            t
        };
        if json == b"[DONE]" {
            self.done = true;
            return Line::Pass;
        }
        let Ok(v) = serde_json::from_slice::<Value>(json) else {
            return Line::Pass;
        };
        if v.get("error").is_some() {
            return Line::Error(super::local::error_text(json));
        }
        if api.openai() && is_error_chunk(&v) {
            return Line::Error(
                "the stream broke (an error line, which Ollama's OpenAI layer sends as an empty chunk)"
                    .into(),
            );
        }
        let text = match api {
            Api::OllamaGenerate => v["response"].as_str(),
            Api::OllamaChat => v["message"]["content"].as_str(),
            Api::OpenAiChat => v["choices"][0]["delta"]["content"].as_str(),
            Api::OpenAiCompletion => v["choices"][0]["text"].as_str(),
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            self.text.push_str(text);
            self.tokens += 1;
        }
        if api.openai() {
            if let Some(id) = v["id"].as_str() {
                self.id.get_or_insert_with(|| id.to_string());
            }
        } else {
            self.done |= v["done"] == Value::Bool(true);
        }
        Line::Pass
    }
}

/// Whether an OpenAI chunk of the local Ollama is its stream's error line: Ollama's OpenAI
/// layer (v0.17.4, `middleware/openai.go`) turns the `{"error": ...}` line of a stream that
/// broke into a chunk of an empty answer, whose `model` is empty (every other chunk names
/// the model), then ends the stream without `data: [DONE]`.
fn is_error_chunk(v: &Value) -> bool {
    let choice = &v["choices"][0];
    let text = choice["delta"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or("");
    v["model"].as_str() == Some("") && text.is_empty() && choice["finish_reason"].is_null()
}

/// `resp`, the local Ollama's answer to `req`, with its stream rescued by the mesh should
/// it break (see the module docs); an answer that cannot be rescued is returned as it is.
pub fn guard(front: Arc<FrontDoor>, api: Api, req: &AgentRequest, resp: Response) -> Response {
    let streamed = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with(ollama::NDJSON) || c.starts_with(openai::SSE));
    if !req.stream
        || !streamed
        || !resp.status().is_success()
        || !req.uncarried.is_empty()
        || front.settings().offload == OffloadMode::Never
    {
        return resp;
    }
    // A rescue pins the continuation to the local model's digest: learnt now, it is kept
    // when the stream breaks.
    if req.request.model_digest.is_none() && !req.request.model.contains('@') {
        front.learn_digest(&req.request.model);
    }
    let (parts, body) = resp.into_parts();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let req = req.clone();
    tokio::spawn(async move { watch(front, api, req, body, tx).await });
    let out = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    Response::from_parts(parts, Body::from_stream(out))
}

/// Pass the local stream `body` on to `tx` line by line; rescue it if it breaks.
async fn watch(
    front: Arc<FrontDoor>,
    api: Api,
    req: AgentRequest,
    body: Body,
    tx: mpsc::Sender<Bytes>,
) {
    let mut stream = body.into_data_stream();
    let mut seen = Seen::default();
    let mut buf: Vec<u8> = Vec::new();
    let why = loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => break format!("the local Ollama's stream broke: {e}"),
            // Ended, whole or not: as Ollama ended it (it closes a stream that repeats
            // one token too often without its last line, on purpose).
            None => {
                if !buf.is_empty() {
                    let _ = tx.send(Bytes::from(buf)).await;
                }
                return;
            }
        };
        buf.extend_from_slice(&chunk);
        let mut error = None;
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            match seen.read(api, &line[..i]) {
                Line::Pass => {
                    if tx.send(Bytes::from(line)).await.is_err() {
                        return; // The agent went away: the local request is dropped.
                    }
                }
                Line::Error(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            break format!("the local Ollama: {e}");
        }
        if seen.done {
            // The answer is whole: the rest (if any) passes as it comes.
            let _ = tx.send(Bytes::from(std::mem::take(&mut buf))).await;
            while let Some(Ok(c)) = stream.next().await {
                if tx.send(c).await.is_err() {
                    return;
                }
            }
            return;
        }
        if buf.len() > MAX_LINE {
            tracing::warn!("a line of the local stream is too long to watch: not rescued");
            let _ = tx.send(Bytes::from(std::mem::take(&mut buf))).await;
            while let Some(Ok(c)) = stream.next().await {
                if tx.send(c).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    drop(stream);
    tracing::warn!(model = %req.request.model, delivered = seen.text.len(), tokens = seen.tokens, %why, "the local answer broke mid-stream: the mesh continues it");
    continue_on_mesh(&front, api, &req, &seen, &why, &tx).await;
}

/// The rest of the answer from the mesh, in `api`'s stream format, to `tx`.
async fn continue_on_mesh(
    front: &FrontDoor,
    api: Api,
    req: &AgentRequest,
    seen: &Seen,
    why: &str,
    tx: &mpsc::Sender<Bytes>,
) {
    let mut dreq = req.request.clone();
    if !seen.text.is_empty() {
        dreq.messages = Some(crate::requester::rescue::continuation(
            &dreq.prompt,
            dreq.messages.as_deref(),
            &seen.text,
        ));
        dreq.prompt.clear();
    }
    if dreq.model_digest.is_none() && !dreq.model.contains('@') {
        dreq.model_digest = front.local_digest(&dreq.model).await;
    }
    let model = req.request.model.clone();
    let answer = crate::requester::events::start(front.requester.clone(), dreq, true).await;
    let mut events = match answer {
        Ok(a) => {
            tracing::info!(job = %a.job_id, provider = %a.provider.node_id.short(), "rescue: the continuation is with a provider");
            a.events
        }
        Err(e) => {
            let _ = tx.send(failed(api, why, &e)).await;
            return;
        }
    };
    let id = seen
        .id
        .clone()
        .unwrap_or_else(|| openai::answer_id(api, "rescued"));
    while let Some(ev) = events.next().await {
        let bytes = match ev {
            MeshEvent::Delta(t) if api.openai() => {
                openai::event(&openai::chunk(api, &id, &model, &t, None))
            }
            MeshEvent::Delta(t) => ollama::line(&ollama::delta(api, &model, &t)),
            MeshEvent::Done(mut r) => {
                whole_counts(&mut r, seen.tokens);
                last_lines(api, &id, &model, &r, req.include_usage)
            }
            MeshEvent::Failed(e) => failed(api, why, &e).to_vec(),
        };
        if tx.send(Bytes::from(bytes)).await.is_err() {
            return; // The agent went away: dropping `events` cancels the job.
        }
    }
}

/// The counts of the whole answer: the provider read the `local` tokens again as part of
/// its prompt, and they belong to the answer.
fn whole_counts(r: &mut crate::request::DelegateResponse, local: u64) {
    let u = &mut r.usage;
    u.prompt_tokens = u.prompt_tokens.map(|p| p.saturating_sub(local));
    u.completion_tokens = Some(u.completion_tokens.unwrap_or(0).saturating_add(local));
}

/// The answer's last lines in `api`'s stream format.
fn last_lines(
    api: Api,
    id: &str,
    model: &str,
    r: &crate::request::DelegateResponse,
    include_usage: bool,
) -> Vec<u8> {
    let mut b = Vec::new();
    if api.openai() {
        if !r.tool_calls.is_empty() {
            b.extend(openai::event(&openai::tool_chunk(api, id, model, r)));
        }
        b.extend(openai::event(&openai::last_chunk(api, id, model, r)));
        if include_usage {
            b.extend(openai::event(&openai::usage_chunk(api, id, model, r)));
        }
        b.extend_from_slice(openai::DONE);
    } else {
        if let Some(v) = ollama::tool_line(api, model, r) {
            b.extend(ollama::line(&v));
        }
        b.extend(ollama::line(&ollama::done(api, model, r, false)));
    }
    b
}

/// The stream's last line when the mesh could not continue it: the local break and the
/// mesh's failure, in `api`'s error shape.
fn failed(api: Api, why: &str, e: &crate::request::DelegateError) -> Bytes {
    let msg = format!("the answer is cut short: {why}; the mesh could not continue it: {e}");
    let mut b = Vec::new();
    if api.openai() {
        b.extend(openai::event(&openai::error(502, &msg)));
        b.extend_from_slice(openai::DONE);
    } else {
        b.extend(ollama::line(&ollama::error(&msg)));
    }
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_and_the_end_of_each_format_are_seen() {
        let mut s = Seen::default();
        assert_eq!(
            s.read(Api::OllamaGenerate, br#"{"response":"Hel","done":false}"#),
            Line::Pass
        );
        s.read(Api::OllamaGenerate, br#"{"response":"lo","done":false}"#);
        assert_eq!((s.text.as_str(), s.tokens, s.done), ("Hello", 2, false));
        assert_eq!(
            s.read(Api::OllamaGenerate, br#"{"error":"unexpected EOF"}"#),
            Line::Error("unexpected EOF".into())
        );
        s.read(Api::OllamaGenerate, br#"{"response":"","done":true}"#);
        assert!(s.done);

        let mut s = Seen::default();
        let chunk = br#"data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(s.read(Api::OpenAiChat, chunk), Line::Pass);
        assert_eq!(s.read(Api::OpenAiChat, b""), Line::Pass);
        assert_eq!(
            (s.text.as_str(), s.id.as_deref()),
            ("Hi", Some("chatcmpl-7"))
        );
        assert!(!s.done);
        s.read(Api::OpenAiChat, b"data: [DONE]");
        assert!(s.done);

        // Ollama's OpenAI layer sends a broken stream's error line as an empty chunk with
        // an empty `model`; an empty chunk naming the model is an answer's.
        let mut s = Seen::default();
        let named = br#"data: {"id":"chatcmpl-7","model":"gemma3:270m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(s.read(Api::OpenAiChat, named), Line::Pass);
        let broke = br#"data: {"id":"chatcmpl-7","model":"","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert!(matches!(s.read(Api::OpenAiChat, broke), Line::Error(_)));
        let completion = br#"data: {"id":"cmpl-7","model":"","choices":[{"index":0,"text":"","finish_reason":null}]}"#;
        assert!(matches!(
            s.read(Api::OpenAiCompletion, completion),
            Line::Error(_)
        ));
    }

    #[test]
    fn the_whole_answer_counts_the_local_tokens_as_its_own() {
        let mut r: crate::request::DelegateResponse = serde_json::from_value(serde_json::json!({
            "job_id": crate::protocol::JobId([1; 32]),
            "provider": {"node_id": crate::axl::PeerKey([2; 32])},
            "output": "world",
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "inference_ms": 1},
            "timings": {},
        }))
        .unwrap();
        whole_counts(&mut r, 7);
        assert_eq!(r.usage.prompt_tokens, Some(13));
        assert_eq!(r.usage.completion_tokens, Some(12));
    }
}
