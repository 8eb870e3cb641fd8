//! `edgent delegate`: one prompt, a conversation from a file, or a chat on standard input,
//! through the daemon's `/delegate`. The answer prints as text (streamed as it comes with
//! `--stream`) or as JSON (`--json`); a failure prints its code and words and ends with its
//! [`Exit`] code.

use std::io::{BufRead, Write};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Exit;
use crate::client::{ApiClient, ApiFailure};
use crate::protocol::ChatMessage;
use crate::request::DelegateRequest;

/// How the answer prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// Print the text as it is generated (`--stream`).
    pub stream: bool,
    /// Machine-readable: with `stream`, a `{"delta": ...}` line per piece, then the whole
    /// answer as one JSON line; a failure is `{"error", "detail"}` on standard output.
    pub json: bool,
}

/// Read a conversation (`--messages FILE`): a JSON array of `{role, content}`.
pub fn read_messages(text: &str) -> Result<Vec<ChatMessage>, serde_json::Error> {
    serde_json::from_str(text)
}

/// One delegation of `req`, printed as `out` says. Returns how it ended.
pub async fn once(api: &ApiClient, req: &DelegateRequest, out: Output) -> Exit {
    match ask(api, req, out).await {
        Ok(answer) => {
            print_answer(&answer, out);
            Exit::Ok
        }
        Err(e) => print_failure(&e, out),
    }
}

/// A chat: each line of `input` is the user's next message; each answer prints (streamed
/// with `out.stream`) and joins the conversation. Ends at the end of the input, or at the
/// first failure with its exit code.
pub async fn chat(
    api: &ApiClient,
    mut req: DelegateRequest,
    input: impl BufRead,
    out: Output,
) -> Exit {
    let mut messages = req.messages.take().unwrap_or_default();
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("edgent: reading the chat from standard input: {e}");
                return Exit::Failed;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line,
            ..Default::default()
        });
        req.messages = Some(messages.clone());
        match ask(api, &req, out).await {
            Ok(answer) => {
                print_answer(&answer, out);
                messages.push(ChatMessage {
                    role: "assistant".into(),
                    content: answer["output"].as_str().unwrap_or_default().to_string(),
                    ..Default::default()
                });
            }
            Err(e) => return print_failure(&e, out),
        }
    }
    Exit::Ok
}

/// Ask, printing each delta as it arrives when streaming.
async fn ask(api: &ApiClient, req: &DelegateRequest, out: Output) -> Result<Value, ApiFailure> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut stdout = std::io::stdout();
        while let Some(delta) = rx.recv().await {
            if !out.stream {
                continue;
            }
            let written = if out.json {
                writeln!(stdout, "{}", json!({ "delta": delta }))
            } else {
                write!(stdout, "{delta}")
            };
            if written.and_then(|()| stdout.flush()).is_err() {
                // Standard output is gone (a closed pipe): nothing more to show.
                return;
            }
        }
    });
    let answer = api.delegate(req, tx).await;
    // The sender is dropped with the call: the printer ends once it printed every delta.
    let _ = printer.await;
    answer
}

fn print_answer(answer: &Value, out: Output) {
    if out.json {
        println!("{answer}");
        return;
    }
    if out.stream {
        println!();
    } else {
        println!("{}", answer["output"].as_str().unwrap_or_default());
    }
    eprintln!("{}", summary(answer));
}

/// One line about the answer, for a person: job, provider, time, and the payment.
pub fn summary(answer: &Value) -> String {
    let job = short(answer["job_id"].as_str().unwrap_or("?"));
    let provider = answer["provider"]["ens"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| short(answer["provider"]["node_id"].as_str().unwrap_or("?")));
    let mut line = format!("edgent: job {job} by {provider}");
    if let Some(ms) = answer["timings"]["total_ms"].as_u64() {
        line.push_str(&format!(" in {ms} ms"));
    }
    match answer["payment"].as_object() {
        Some(p) => line.push_str(&format!(
            ", paid {} USDC ({})",
            crate::config::format_usdc(p.get("amount_units").and_then(Value::as_u64).unwrap_or(0)),
            p.get("status").and_then(Value::as_str).unwrap_or("?"),
        )),
        None => line.push_str(", unpaid"),
    }
    line
}

fn print_failure(e: &ApiFailure, out: Output) -> Exit {
    if out.json {
        println!("{}", json!({"error": e.code, "detail": e.detail}));
    } else {
        eprintln!("edgent: {}: {}", e.code, e.detail);
    }
    Exit::of_code(&e.code)
}

/// The first 8 characters of an id, as people compare them.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
