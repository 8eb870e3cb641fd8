//! The front door's settings (`EDGENT_OFFLOAD`, `EDGENT_OLLAMA_ADDR`) and the guard's
//! (`EDGENT_API_TOKEN` or `EDGENT_API_TOKEN_PATH`, `EDGENT_ORIGINS`). [`crate::front`]
//! serves them.

use std::net::SocketAddr;

use super::value::{ConfigError, Lookup};
use crate::chain::Secret;

/// The API token's file name in the data directory, as `edgent init` writes it.
pub const API_TOKEN_FILE: &str = "api.token";

/// When a request goes to the mesh (`EDGENT_OFFLOAD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffloadMode {
    /// When the local Ollama is out of memory, lacks the model, or is unreachable.
    #[default]
    Oom,
    /// Before the out-of-memory: when the model is predicted not to fit
    /// ([`crate::front::predict`]), else as `Oom`.
    Predict,
    /// Every generation request.
    Always,
    /// Never: the front door is a plain proxy to the local Ollama.
    Never,
}

/// The front door's settings.
#[derive(Debug, Clone, Default)]
pub struct FrontSettings {
    /// `EDGENT_OFFLOAD`: oom (default), predict, always, never.
    pub offload: OffloadMode,
    /// `EDGENT_LOCAL_MEMORY_MB`, in bytes: the memory the local Ollama may use, for
    /// `predict` (default: what the machine has available).
    pub local_memory: Option<u64>,
    /// `EDGENT_OLLAMA_ADDR`: a second address serving only the Ollama and OpenAI routes.
    pub ollama_addr: Option<SocketAddr>,
    /// `EDGENT_API_TOKEN`, or the file at `EDGENT_API_TOKEN_PATH`: the API token (see
    /// [`crate::guard`] for what a caller without it may do).
    pub token: Option<Secret>,
    /// `EDGENT_ORIGINS`: extra allowed `Origin`s, comma-separated (`*` for any).
    pub origins: Vec<String>,
}

impl FrontSettings {
    /// Read the settings through `get` (the configuration's sources).
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, value: &str, problem: &str| ConfigError::Invalid {
            key,
            value: value.to_string(),
            problem: problem.to_string(),
        };
        let offload = match get("EDGENT_OFFLOAD").as_deref().map(str::trim) {
            Some("oom") => OffloadMode::Oom,
            None | Some("predict") => OffloadMode::Predict,
            Some("always") => OffloadMode::Always,
            Some("never") => OffloadMode::Never,
            Some(other) => {
                return Err(invalid(
                    "EDGENT_OFFLOAD",
                    other,
                    "expected oom, predict, always or never",
                ))
            }
        };
        let ollama_addr = match get("EDGENT_OLLAMA_ADDR") {
            Some(v) => Some(v.trim().parse().map_err(|_| {
                invalid(
                    "EDGENT_OLLAMA_ADDR",
                    &v,
                    "expected host:port, e.g. 127.0.0.1:11435",
                )
            })?),
            None => None,
        };
        let local_memory = match get("EDGENT_LOCAL_MEMORY_MB").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => match v.parse::<u64>() {
                Ok(mb) if mb > 0 => Some(mb << 20),
                _ => {
                    return Err(invalid(
                        "EDGENT_LOCAL_MEMORY_MB",
                        v,
                        "expected a whole number of MiB above 0, e.g. 2048",
                    ))
                }
            },
        };
        let token = api_token(get)?;
        let origins = get("EDGENT_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(FrontSettings {
            offload,
            local_memory,
            ollama_addr,
            token,
            origins,
        })
    }
}

/// The API token: `EDGENT_API_TOKEN`, or the first line of the file at
/// `EDGENT_API_TOKEN_PATH` (empty values count as unset; both set is an error).
fn api_token(get: Lookup) -> Result<Option<Secret>, ConfigError> {
    let set = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match (set("EDGENT_API_TOKEN"), set("EDGENT_API_TOKEN_PATH")) {
        (Some(_), Some(path)) => Err(super::value::invalid(
            "EDGENT_API_TOKEN_PATH",
            &path,
            "set only one of EDGENT_API_TOKEN and EDGENT_API_TOKEN_PATH",
        )),
        (Some(t), None) => Ok(Some(Secret::new(t))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                super::value::invalid(
                    "EDGENT_API_TOKEN_PATH",
                    &path,
                    format!("cannot be read: {e}"),
                )
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(super::value::invalid(
                    "EDGENT_API_TOKEN_PATH",
                    &path,
                    "the file is empty",
                ));
            }
            Ok(Some(Secret::new(token)))
        }
        (None, None) => Ok(None),
    }
}

/// A listening address the guard cannot make safe.
#[derive(Debug, thiserror::Error)]
#[error("{addr} is not a loopback address: set EDGENT_API_TOKEN so that only callers with the token can use it ({key})")]
pub struct UnsafeBind {
    /// The setting, e.g. `EDGENT_HTTP_ADDR`.
    pub key: &'static str,
    /// The address.
    pub addr: SocketAddr,
}

/// Refuse a non-loopback listening address when no token guards it.
pub fn check_bind(
    key: &'static str,
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<(), UnsafeBind> {
    if addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(UnsafeBind { key, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        let s = FrontSettings::from_lookup(&|k| match k {
            "EDGENT_OFFLOAD" => Some("always".into()),
            "EDGENT_OLLAMA_ADDR" => Some("127.0.0.1:11435".into()),
            "EDGENT_ORIGINS" => Some("https://a.example/, https://b.example".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.offload, OffloadMode::Always);
        assert_eq!(s.ollama_addr.unwrap().port(), 11435);
        assert_eq!(s.origins, vec!["https://a.example", "https://b.example"]);
        assert!(
            FrontSettings::from_lookup(&|k| (k == "EDGENT_OFFLOAD").then(|| "x".into())).is_err()
        );
        assert_eq!(
            FrontSettings::from_lookup(&|_| None).unwrap().offload,
            OffloadMode::Predict
        );
    }
}
