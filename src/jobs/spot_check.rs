//! What a requester's spot check of a job found ([`SpotCheck`]), kept with the job record:
//! who re-ran it, what they signed, and who, if anyone, was caught.

use serde::{Deserialize, Serialize};

use crate::axl::PeerKey;
use crate::protocol::Receipt;

/// How a spot check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SpotVerdict {
    /// The checker's run agreed with the provider's.
    Passed,
    /// The provider's run disagreed with the checker's and a third run: it was caught.
    Caught,
    /// The checker's run disagreed with the provider's and a third run's: the checker was
    /// in the minority, the provider passed.
    CheckerCaught,
    /// The runs disagreed and no third run settled it: nobody is accused.
    Unsettled,
    /// No other provider of the same model could re-run it.
    NoChecker,
}

/// One spot check of a job.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotCheck {
    /// The provider whose result was checked.
    pub provider: PeerKey,
    /// How it ended.
    pub verdict: SpotVerdict,
    /// `rerun`: the job's own task ran again (its sampling was fixed); `probe`: the job's
    /// prompt ran greedy on the provider and on the checker.
    pub mode: String,
    /// The providers that re-ran it, the checker first, then the third run's.
    pub checkers: Vec<PeerKey>,
    /// The signed receipts compared: the provider's (its result's, or its probe's), then
    /// each checker's; the evidence of a dispute.
    pub receipts: Vec<Receipt>,
    /// keccak256 of each run's output compared, in the order of `receipts`.
    pub output_hashes: Vec<String>,
    /// What the check cost: the wall time of its runs, milliseconds.
    pub ms: u64,
    /// When it ended, unix ms (0 in a record from before it was kept).
    #[serde(default)]
    pub at_ms: u64,
    /// What the check cost: the USDC base units its paid runs were paid (each run is a
    /// paid job to its provider, at its price, when payments are on; 0 when off).
    #[serde(default)]
    pub cost_units: u64,
    /// The job ids of its runs (their own records when paid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_jobs: Vec<crate::protocol::JobId>,
}
