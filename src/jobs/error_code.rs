//! The error codes: the API's one table ([`ErrorCode`]) and what a job record stores as
//! its `error_code` ([`JobErrorCode`]).

use serde::{Deserialize, Serialize};

use super::AttemptOutcome;
use crate::protocol::TaskErrorCode;

/// The error codes of the API, one table: the `error` field of an HTTP error body, the
/// `error_code` of a failed job, and the code of an MCP tool error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is wrong (400).
    BadRequest,
    /// The request is not authorised: missing or wrong API token (401).
    Unauthorized,
    /// A request from a foreign `Host` or `Origin` (403).
    Forbidden,
    /// No such endpoint or model (404).
    NotFound,
    /// The stake could not be made (402).
    PaymentFailed,
    /// The agent's spend budget is used up for now (402, `Retry-After` when known).
    BudgetExhausted,
    /// No provider answered, or none fits (503).
    NoProvider,
    /// The local AXL node is not answering (503).
    MeshUnavailable,
    /// The provider failed the job (502).
    ProviderFailed,
    /// The result came without a proof that checks (502).
    ProofInvalid,
    /// The result's signed receipt is missing or does not match the job: not accepted,
    /// not paid (502).
    ReceiptInvalid,
    /// A spot check caught the provider serving another model than it claims: not
    /// accepted, not paid (502).
    ProviderCaught,
    /// The deadline passed (504).
    Deadline,
    /// The agent went away and the job was cancelled (499, as nginx logs a client that
    /// closed its request: nobody is left to read it).
    Cancelled,
    /// Something broke here (500).
    Internal,
}

impl ErrorCode {
    /// The snake_case name, as in the API and the job record.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::PaymentFailed | ErrorCode::BudgetExhausted => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Cancelled => 499,
            ErrorCode::Internal => 500,
            ErrorCode::ProviderFailed
            | ErrorCode::ProofInvalid
            | ErrorCode::ReceiptInvalid
            | ErrorCode::ProviderCaught => 502,
            ErrorCode::NoProvider | ErrorCode::MeshUnavailable => 503,
            ErrorCode::Deadline => 504,
        }
    }
}

/// The `error_code` of a job record: how the delegation ended in the API's table, the
/// provider's own code, or how a paid attempt that failed over ended; stored as its
/// snake_case name. Reading a name back gives the first of these tables that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobErrorCode {
    /// How the delegation ended, in the API's table (`no_provider`, `deadline`, ...).
    Api(ErrorCode),
    /// The provider's own code when it refused or failed the job (`busy`, ...).
    Provider(TaskErrorCode),
    /// Requester: a paid attempt that failed over to another provider, by how it ended.
    Attempt(AttemptOutcome),
    /// A paid attempt that failed over with no attempt on record.
    Failed,
    /// Provider: the result could not be delivered.
    Undelivered,
    /// The daemon stopped while the job was in flight.
    Interrupted,
    /// A code none of these tables has (a record written by another version).
    Other(String),
}

impl JobErrorCode {
    /// The snake_case name, as stored and as `/jobs` shows it.
    pub fn as_str(&self) -> &str {
        match self {
            JobErrorCode::Api(c) => c.as_str(),
            JobErrorCode::Provider(c) => c.as_str(),
            JobErrorCode::Attempt(o) => o.as_str(),
            JobErrorCode::Failed => "failed",
            JobErrorCode::Undelivered => "undelivered",
            JobErrorCode::Interrupted => "interrupted",
            JobErrorCode::Other(s) => s,
        }
    }

    /// The code of a stored name.
    pub fn parse(s: &str) -> JobErrorCode {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        let name = || -> StrDeserializer<'_, Error> { s.into_deserializer() };
        match s {
            "failed" => return JobErrorCode::Failed,
            "undelivered" => return JobErrorCode::Undelivered,
            "interrupted" => return JobErrorCode::Interrupted,
            _ => {}
        }
        if let Ok(c) = ErrorCode::deserialize(name()) {
            JobErrorCode::Api(c)
        } else if let Ok(c) = TaskErrorCode::deserialize(name()) {
            JobErrorCode::Provider(c)
        } else if let Ok(o) = AttemptOutcome::deserialize(name()) {
            JobErrorCode::Attempt(o)
        } else {
            JobErrorCode::Other(s.to_string())
        }
    }
}

impl std::fmt::Display for JobErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for JobErrorCode {
    fn from(c: ErrorCode) -> Self {
        JobErrorCode::Api(c)
    }
}

impl From<TaskErrorCode> for JobErrorCode {
    fn from(c: TaskErrorCode) -> Self {
        JobErrorCode::Provider(c)
    }
}

impl From<AttemptOutcome> for JobErrorCode {
    fn from(o: AttemptOutcome) -> Self {
        JobErrorCode::Attempt(o)
    }
}

impl Serialize for JobErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(JobErrorCode::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_error_codes_are_stored_as_their_names() {
        for (code, name) in [
            (JobErrorCode::Api(ErrorCode::NoProvider), "no_provider"),
            (
                JobErrorCode::Provider(TaskErrorCode::StakeMissing),
                "stake_missing",
            ),
            (JobErrorCode::Attempt(AttemptOutcome::Dead), "dead"),
            (JobErrorCode::Interrupted, "interrupted"),
            (JobErrorCode::Undelivered, "undelivered"),
            (
                JobErrorCode::Other("from_the_future".into()),
                "from_the_future",
            ),
        ] {
            assert_eq!(serde_json::to_value(&code).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<JobErrorCode>(name.into()).unwrap(),
                code
            );
        }
    }
}
