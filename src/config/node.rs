//! The node itself: where its HTTP API listens, where it keeps its data, which side(s) of
//! delegation it plays, its ENS name, and how often it announces itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::value::{invalid, ranged, ConfigError, Lookup};

/// Which side(s) of delegation this node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Only delegates its own jobs.
    Requester,
    /// Only serves others' jobs.
    Provider,
    /// Both.
    Both,
}

impl Role {
    /// Whether it serves jobs.
    pub fn provides(&self) -> bool {
        matches!(self, Role::Provider | Role::Both)
    }
    /// Whether it delegates jobs.
    pub fn requests(&self) -> bool {
        matches!(self, Role::Requester | Role::Both)
    }
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// The node's own settings.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// `EDGENT_HTTP_ADDR`: where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// `EDGENT_DATA_DIR`: job database, AXL key and config.
    pub data_dir: PathBuf,
    /// `EDGENT_ROLE`.
    pub role: Role,
    /// `EDGENT_ENS_NAME`: this node's ENS name, shown to peers.
    pub ens_name: Option<String>,
    /// `ANNOUNCE_INTERVAL_SECS`: how often a node announces itself (and a provider its ad);
    /// zero turns announcements off (discovery by broadcast only). Default 20.
    pub announce_interval: Duration,
}

impl NodeSettings {
    /// Read and check the node's settings.
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        let http_addr = match get("EDGENT_HTTP_ADDR") {
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    "EDGENT_HTTP_ADDR",
                    &v,
                    "expected host:port, e.g. 127.0.0.1:8080",
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let data_dir = PathBuf::from(get("EDGENT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let role = match get("EDGENT_ROLE").as_deref().map(str::trim) {
            None | Some("both") => Role::Both,
            Some("requester") => Role::Requester,
            Some("provider") => Role::Provider,
            Some(other) => {
                return Err(invalid(
                    "EDGENT_ROLE",
                    other,
                    "expected requester, provider or both",
                ))
            }
        };
        let ens_name = get("EDGENT_ENS_NAME").map(|v| v.trim().to_string());
        if let Some(n) = &ens_name {
            if n.len() > crate::protocol::MAX_ENS_LEN
                || !n.contains('.')
                || n.contains(char::is_whitespace)
            {
                return Err(invalid(
                    "EDGENT_ENS_NAME",
                    n,
                    "expected an ENS name such as dell-g15.edgent.eth",
                ));
            }
        }
        let announce_interval = match get("ANNOUNCE_INTERVAL_SECS") {
            Some(v) if v.trim() == "0" => Duration::ZERO,
            v => ranged(v, "ANNOUNCE_INTERVAL_SECS", 20, (5, 3_600), "seconds")
                .map(Duration::from_secs)?,
        };
        Ok(NodeSettings {
            http_addr,
            data_dir,
            role,
            ens_name,
            announce_interval,
        })
    }
}
