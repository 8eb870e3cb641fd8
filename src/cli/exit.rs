//! The exit codes of `edgent delegate`, `status` and `jobs`: distinct for each failure a
//! script can act on, named after the API's error codes
//! ([`crate::request::ErrorCode`]).

use std::process::ExitCode;

/// How a command ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: it worked.
    Ok = 0,
    /// 1: any other failure (an internal error, an answer that is not JSON).
    Failed = 1,
    /// 2: the command line itself is wrong (clap's own code for usage errors).
    Usage = 2,
    /// 3: no provider served the model (`no_provider`).
    NoProvider = 3,
    /// 4: the deadline passed (`deadline`).
    Deadline = 4,
    /// 5: the payment was refused or could not be made (`payment_failed`,
    /// `budget_exhausted`).
    PaymentRefused = 5,
    /// 6: the daemon refused the request as wrong (`bad_request`, `not_found`).
    BadRequest = 6,
    /// 7: the daemon, or its mesh, cannot be reached (`daemon_unreachable`,
    /// `mesh_unavailable`).
    Unreachable = 7,
    /// 8: the provider failed the job or its proof did not check (`provider_failed`,
    /// `proof_invalid`).
    ProviderFailed = 8,
    /// 9: the API token is missing or wrong, or the caller is not allowed
    /// (`unauthorized`, `forbidden`).
    Unauthorized = 9,
}

impl Exit {
    /// The exit code for an API error code.
    pub fn of_code(code: &str) -> Exit {
        match code {
            "no_provider" => Exit::NoProvider,
            "deadline" => Exit::Deadline,
            "payment_failed" | "budget_exhausted" => Exit::PaymentRefused,
            "bad_request" | "not_found" => Exit::BadRequest,
            crate::client::DAEMON_UNREACHABLE | "mesh_unavailable" => Exit::Unreachable,
            "provider_failed" | "proof_invalid" | "receipt_invalid" | "provider_caught" => {
                Exit::ProviderFailed
            }
            "unauthorized" | "forbidden" => Exit::Unauthorized,
            _ => Exit::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ErrorCode;

    #[test]
    fn each_api_error_code_has_its_exit_code() {
        let cases = [
            (ErrorCode::NoProvider, 3),
            (ErrorCode::Deadline, 4),
            (ErrorCode::PaymentFailed, 5),
            (ErrorCode::BudgetExhausted, 5),
            (ErrorCode::BadRequest, 6),
            (ErrorCode::NotFound, 6),
            (ErrorCode::MeshUnavailable, 7),
            (ErrorCode::ProviderFailed, 8),
            (ErrorCode::ProofInvalid, 8),
            (ErrorCode::ReceiptInvalid, 8),
            (ErrorCode::ProviderCaught, 8),
            (ErrorCode::Unauthorized, 9),
            (ErrorCode::Forbidden, 9),
            (ErrorCode::Internal, 1),
            (ErrorCode::Cancelled, 1),
        ];
        for (code, exit) in cases {
            assert_eq!(Exit::of_code(code.as_str()) as u8, exit, "{code:?}");
        }
        assert_eq!(
            Exit::of_code(crate::client::DAEMON_UNREACHABLE),
            Exit::Unreachable
        );
    }
}
