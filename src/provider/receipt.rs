//! The provider's side of [`crate::protocol::receipt`]: the receipt it signs for each
//! result with its AXL key (and, under the TEST ONLY `EDGENT_TEST_RECEIPT_LIE`, the lie a
//! cheating provider would tell).

use crate::jobs::now_ms;
use crate::protocol::receipt::{self, ReceiptBody, ReceiptSigner};
use crate::protocol::{Receipt, Task};

/// What a provider ran for `task`: its model's digest and the output.
pub(super) struct Ran<'a> {
    /// The digest of the model it ran, when the backend told one.
    pub digest: Option<&'a str>,
    /// The output.
    pub output: &'a str,
    /// The tool calls that came with it.
    pub tool_calls: &'a [serde_json::Value],
}

/// The signed receipt for a result, `None` when this node holds no signing key (or the
/// test switch says to send none). The options are the task's: a provider passes them to
/// its backend unchanged.
pub(super) fn sign(
    signer: Option<&ReceiptSigner>,
    lie: Option<&str>,
    task: &Task,
    ran: &Ran<'_>,
) -> Option<Receipt> {
    let signer = signer?;
    let mut body = ReceiptBody {
        job_id: task.job_id.to_string(),
        // The name the requester asked for and the backend served it under.
        model: task.model.clone(),
        model_digest: ran.digest.unwrap_or_default().to_string(),
        options_json: receipt::options_json(task.options.as_ref()),
        prompt_hash: receipt::prompt_hash(&task.prompt, task.messages.as_deref()),
        output_hash: receipt::output_hash(ran.output),
        tool_calls_hash: receipt::tool_calls_hash(ran.tool_calls),
        time_ms: now_ms(),
        signer: String::new(),
    };
    match lie {
        None => Some(signer.sign(body)),
        Some("none") => None,
        Some("model") => {
            body.model = format!("{}-other", task.model);
            Some(signer.sign(body))
        }
        Some("digest") => {
            body.model_digest = "0".repeat(64);
            Some(signer.sign(body))
        }
        Some("options") => {
            body.options_json = r#"{"temperature":1.5}"#.into();
            Some(signer.sign(body))
        }
        Some(_) => {
            // "key": signed by a key that is not this node's.
            let other = ReceiptSigner::from_seed(&[0x5a; 32]);
            let mut r = other.sign(body);
            r.body.signer = signer.public().to_hex();
            Some(r)
        }
    }
}
