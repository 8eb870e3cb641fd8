//! What an agent gets back from a delegation: the answer ([`DelegateResponse`]), who served
//! it, the money, and every provider tried ([`Attempt`]) with how it ended.

use serde::{Deserialize, Serialize};

use crate::axl::PeerKey;
use crate::jobs::{Attempt, Timings};
use crate::protocol::{JobId, Usage};

/// The money of a paid job, as `/delegate` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentSummary {
    /// Where the money is (`verified`, `released`, `disputed`, ...).
    pub status: String,
    /// Staked amount, USDC base units.
    pub amount_units: u64,
    /// The stake transaction.
    pub stake_tx: Option<String>,
    /// The settling transaction (the release), once there is one.
    pub tx_hash: Option<String>,
    /// Explorer link for `tx_hash`.
    pub explorer_url: Option<String>,
}

/// The provider that served a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderInfo {
    /// Its full AXL key.
    pub node_id: PeerKey,
    /// Its ENS name.
    pub ens: Option<String>,
    /// Its wallet.
    pub wallet: Option<String>,
}

/// What a streamed delegation tells whoever asked for the stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// The task went to this provider (first, once per provider tried).
    Started {
        /// The job.
        job_id: JobId,
        /// Who runs it.
        provider: ProviderInfo,
    },
    /// More output, in order.
    Delta(String),
}

/// Where a streamed delegation sends its [`StreamEvent`]s (see [`crate::stream`]).
#[derive(Debug, Clone)]
pub struct StreamSink {
    /// The events.
    pub events: tokio::sync::mpsc::UnboundedSender<StreamEvent>,
}

/// The answer to `POST /delegate`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelegateResponse {
    /// The job id.
    pub job_id: JobId,
    /// Who ran it.
    pub provider: ProviderInfo,
    /// The model's output.
    pub output: String,
    /// The tool calls the model made, in Ollama's shape (`{id?, function: {name,
    /// arguments}}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// What it cost in tokens and time on the provider.
    pub usage: Usage,
    /// Phase timings, milliseconds.
    pub timings: Timings,
    /// Paid jobs: whether the provider's proof checked.
    pub proof_verified: Option<bool>,
    /// Paid jobs: the money.
    pub payment: Option<PaymentSummary>,
    /// Every provider tried, in order; the last one answered.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}
