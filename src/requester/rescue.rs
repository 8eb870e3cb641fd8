//! Rescue in the middle of a stream: a streamed answer whose runner died after part of its
//! text reached the agent goes on at another provider, from where it broke.
//!
//! The next provider gets the same job as a chat whose last message is the assistant's
//! text so far: the conversation (or the prompt as the user's message) and then
//! `{"role": "assistant", "content": <delivered>}`. Ollama's chat continues a last
//! assistant message instead of answering it (its templates leave that turn open), so the
//! provider generates only what follows, and the agent's one stream reads the text before
//! the break, then the continuation, with nothing twice and nothing missing.
//!
//! Two places break a stream: a provider that dies mid-answer (its attempt ends dead,
//! unreachable, or with its backend failed; [`Rescue`] in the requester's attempt loop
//! hands the job to the next candidate with the continuation), and the local Ollama whose
//! runner dies mid-answer (the front door's `front::rescue` delegates the continuation).
//! With payments on, the continuation is a paid attempt of its own (a fresh job id and
//! stake): each provider is paid for the part it delivered a result for, and one that died
//! before submitting a result gets nothing; its stake goes back to the requester (see
//! docs/paid-flow.md, "Rescue").
//!
//! Limits: the rescued answer is the continuation of another run, so it matches what the
//! dead runner would have written only under greedy sampling of the same weights (a
//! pinned model digest keeps the weights); `num_predict` counts again from the break;
//! a backend that does not continue a last assistant message (OpenAI-compatible servers
//! differ) answers it as a new turn.

use crate::jobs::AttemptOutcome;
use crate::protocol::ChatMessage;
use crate::request::{DelegateError, ValidRequest};

/// The conversation that continues `delivered`, the text already given to the agent, of an
/// answer to `prompt` (a generation) or `messages` (a chat): the chat, then the assistant's
/// text so far as its last message (an agent's own trailing assistant message is extended).
pub fn continuation(
    prompt: &str,
    messages: Option<&[ChatMessage]>,
    delivered: &str,
) -> Vec<ChatMessage> {
    let mut msgs = match messages {
        Some(m) if !m.is_empty() => m.to_vec(),
        _ => vec![message("user", prompt)],
    };
    match msgs.last_mut() {
        Some(last) if last.role == "assistant" && last.tool_calls.is_empty() => {
            last.content.push_str(delivered)
        }
        _ => msgs.push(message("assistant", delivered)),
    }
    msgs
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content: content.to_string(),
        images: Vec::new(),
        tool_calls: Vec::new(),
        tool_name: None,
        tool_call_id: None,
    }
}

/// Whether an attempt that ended so, after some of its text reached the agent, is
/// rescued: its runner died mid-answer. A refused result (a bad receipt, a caught cheat)
/// was whole: nothing is continued after it.
pub(super) fn rescues(outcome: AttemptOutcome) -> bool {
    matches!(
        outcome,
        AttemptOutcome::Dead | AttemptOutcome::Unreachable | AttemptOutcome::InferenceFailed
    )
}

/// One streamed delegation's rescues so far: the text the agent has from the attempts
/// that broke, and the request that continues it.
#[derive(Default)]
pub(super) struct Rescue {
    /// The text before the last break (every broken attempt's, in order).
    pub prefix: String,
    /// How many attempts broke mid-answer.
    pub breaks: u32,
}

impl Rescue {
    /// An attempt broke after streaming `text`: the request the next candidate gets.
    pub fn broke(&mut self, orig: &ValidRequest, text: &str) -> ValidRequest {
        self.prefix.push_str(text);
        self.breaks += 1;
        let mut next = orig.clone();
        next.messages = Some(continuation(
            &orig.prompt,
            orig.messages.as_deref(),
            &self.prefix,
        ));
        next.prompt = String::new();
        next
    }

    /// The failure of a delegation some of whose text reached the agent, when no
    /// candidate was left to continue it: it says the answer is cut short.
    pub fn failed(&self, e: DelegateError) -> DelegateError {
        if self.breaks == 0 {
            return e;
        }
        super::failure::streamed_no_failover(e)
    }

    /// The whole answer's text: what broke, then the continuation `output`.
    pub fn output(&self, output: String) -> String {
        if self.prefix.is_empty() {
            output
        } else {
            format!("{}{output}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_ends_on_the_delivered_text() {
        let m = continuation("Why is the sky blue?", None, "Because of");
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].role.as_str(), m[0].content.as_str()),
            ("user", "Why is the sky blue?")
        );
        assert_eq!(
            (m[1].role.as_str(), m[1].content.as_str()),
            ("assistant", "Because of")
        );
        let chat = vec![message("system", "Be brief."), message("user", "Hi")];
        let m = continuation("", Some(&chat), "Hel");
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].content, "Hel");
        // An agent that prefilled the answer itself: its text is extended, not repeated.
        let pre = vec![message("user", "Count"), message("assistant", "1, 2, ")];
        let m = continuation("", Some(&pre), "3, ");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].content, "1, 2, 3, ");
    }

    #[test]
    fn only_a_runner_that_died_is_rescued() {
        assert!(rescues(AttemptOutcome::Dead));
        assert!(rescues(AttemptOutcome::InferenceFailed));
        assert!(!rescues(AttemptOutcome::BadReceipt));
        assert!(!rescues(AttemptOutcome::Caught));
    }
}
