//! The AXL node: its binary, whether the daemon spawns it, its local API, the peers it
//! dials and the addresses it listens on, its key and its inner TCP port.

use std::path::{Path, PathBuf};

use super::value::{check_url, invalid, parse_bool, parse_list, parse_num, ConfigError, Lookup};

/// The URI schemes Yggdrasil accepts for peers and listeners.
const PEER_SCHEMES: [&str; 6] = ["tls://", "tcp://", "quic://", "ws://", "wss://", "unix://"];

/// How this node runs and reaches AXL.
#[derive(Debug, Clone)]
pub struct AxlSettings {
    /// `AXL_BIN`: the AXL node binary.
    pub bin: PathBuf,
    /// `AXL_SPAWN`: spawn and supervise AXL (true) or attach to a running node (false).
    pub spawn: bool,
    /// `AXL_API_URL`: AXL's local HTTP API.
    pub api_url: String,
    /// `AXL_PEERS`: peers to dial, e.g. `tls://1.2.3.4:9001`.
    pub peers: Vec<String>,
    /// `AXL_LISTEN`: addresses to listen on for peers (the hub), e.g. `tls://0.0.0.0:9001`.
    pub listen: Vec<String>,
    /// `AXL_KEY_PATH`: AXL's ed25519 private key (PEM), created if absent.
    pub key_path: PathBuf,
    /// `AXL_TCP_PORT`: AXL's port inside its userspace network stack.
    pub tcp_port: u16,
}

impl AxlSettings {
    /// Read and check the AXL settings; the key defaults to a file in `data_dir`.
    pub fn from_lookup(get: Lookup, data_dir: &Path) -> Result<Self, ConfigError> {
        let bin = PathBuf::from(get("AXL_BIN").unwrap_or_else(|| "./axl-bin/node".into()));
        let spawn = match get("AXL_SPAWN") {
            Some(v) => parse_bool("AXL_SPAWN", &v)?,
            None => true,
        };
        let api_url = check_url(
            "AXL_API_URL",
            &get("AXL_API_URL").unwrap_or_else(|| "http://127.0.0.1:9002".into()),
        )?;
        let peers = parse_list(&get("AXL_PEERS").unwrap_or_default());
        let listen = parse_list(&get("AXL_LISTEN").unwrap_or_default());
        for (key, list) in [("AXL_PEERS", &peers), ("AXL_LISTEN", &listen)] {
            for uri in list {
                if !PEER_SCHEMES.iter().any(|p| uri.starts_with(p)) {
                    return Err(invalid(
                        key,
                        uri,
                        "expected a Yggdrasil URI such as tls://1.2.3.4:9001",
                    ));
                }
            }
        }
        let key_path = get("AXL_KEY_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("axl-private.pem"));
        let tcp_port = match get("AXL_TCP_PORT") {
            Some(v) => parse_num("AXL_TCP_PORT", &v)?,
            None => 7000,
        };
        Ok(AxlSettings {
            bin,
            spawn,
            api_url,
            peers,
            listen,
            key_path,
            tcp_port,
        })
    }

    /// The port of `AXL_API_URL` (AXL's `api_port`).
    pub fn api_port(&self) -> u16 {
        self.api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(9002)
    }
}
