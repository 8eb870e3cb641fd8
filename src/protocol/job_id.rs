//! The job id: 32 bytes, the escrow's `bytes32`, shown as `0x` + 64 hex.

use std::fmt;

use serde_with::{DeserializeFromStr, SerializeDisplay};
use uuid::Uuid;

/// A job id: 32 bytes, shown as `0x` + 64 hex (the escrow's `bytes32`), and so in JSON.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, SerializeDisplay, DeserializeFromStr,
)]
pub struct JobId(pub [u8; 32]);

impl JobId {
    /// A fresh job id: a random UUID, left-padded with zeros to 32 bytes.
    pub fn new() -> Self {
        let mut b = [0u8; 32];
        b[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        JobId(b)
    }

    /// Parse `0x` + 64 hex.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let t = s.strip_prefix("0x").unwrap_or(s);
        let mut b = [0u8; 32];
        if t.len() != 64 || hex::decode_to_slice(t, &mut b).is_err() {
            return Err(format!(
                "job id must be 0x + 64 hex characters, got {:?}",
                s.chars().take(80).collect::<String>()
            ));
        }
        Ok(JobId(b))
    }

    /// `0x` + 64 lower-case hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.to_hex())
    }
}

impl std::str::FromStr for JobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobId::from_hex(s)
    }
}
