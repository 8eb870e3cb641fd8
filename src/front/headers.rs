//! The headers the front door adds to an answer: where it ran, and for the mesh the job
//! and the provider.

use axum::http::HeaderName;

/// `X-Edgent-Ran-On: local|mesh`.
pub const RAN_ON: HeaderName = HeaderName::from_static("x-edgent-ran-on");
/// `X-Edgent-Job`: the mesh job's id.
pub const JOB: HeaderName = HeaderName::from_static("x-edgent-job");
/// `X-Edgent-Provider`: the provider's node id, then its ENS name when it has one
/// (followed by ` (unverified)` unless its records were checked: [`crate::mesh::names`]).
pub const PROVIDER: HeaderName = HeaderName::from_static("x-edgent-provider");
