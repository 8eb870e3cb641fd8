//! The AXL node's ed25519 private key on disk, so its id survives restarts.
//!
//! AXL (Yggdrasil's `PrivateKeyPath`) reads a PKCS#8 PEM key, the format of
//! `openssl genpkey -algorithm ed25519`: the DER is the fixed 16-byte prefix
//! `302e020100300506032b657004220420` followed by the 32-byte seed. The key is created
//! once with mode 0600, reused as-is afterwards, and never logged.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;

/// DER prefix of a PKCS#8 ed25519 private key (RFC 8410), before the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why the key file could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// The file exists but is not a PKCS#8 PEM ed25519 key (left untouched).
    #[error("key file {path} is not a PKCS#8 PEM ed25519 private key: {why}")]
    Malformed {
        /// The key file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Whether [`ensure_key`] made a new key or found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A new key was written.
    Created,
    /// An existing valid key was kept.
    Existing,
}

/// Make sure `path` holds an ed25519 key AXL can read: create one (mode 0600) if the
/// file does not exist, else check the existing one and leave it unchanged.
pub fn ensure_key(path: &Path) -> Result<KeyOrigin, KeyError> {
    let shown = path.display().to_string();
    let io = |source| KeyError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_pem(&text).map_err(|why| KeyError::Malformed {
                path: shown.clone(),
                why,
            })?;
            warn_if_readable_by_others(path);
            Ok(KeyOrigin::Existing)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
            let pem = encode_pem(&seed);
            seed.fill(0);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(pem.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(target: "axl", path = %shown, "created a new AXL node key");
            Ok(KeyOrigin::Created)
        }
        Err(e) => Err(io(e)),
    }
}

/// The 32-byte seed of the ed25519 key in `path` (the AXL node's key, which signs the
/// provider's receipts). Never logged.
pub fn read_seed(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: shown.clone(),
        source,
    })?;
    let der = decode_pem(&text).map_err(|why| KeyError::Malformed { path: shown, why })?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&der[16..48]);
    Ok(seed)
}

/// The PKCS#8 PEM AXL reads for the ed25519 key with this seed.
pub fn encode_pem(seed: &[u8; 32]) -> String {
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&PKCS8_ED25519_PREFIX);
    der.extend_from_slice(seed);
    // 48 bytes encode to exactly 64 base64 characters: one PEM line.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    der.fill(0);
    format!("{PEM_BEGIN}\n{b64}\n{PEM_END}\n")
}

/// Check the PEM structure without keeping or showing any key material.
fn check_pem(text: &str) -> Result<(), String> {
    decode_pem(text).map(|mut der| der.fill(0))
}

/// The 48 DER bytes of a PKCS#8 PEM ed25519 key.
fn decode_pem(text: &str) -> Result<Vec<u8>, String> {
    let body = text
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or("expected one \"PRIVATE KEY\" PEM block")?;
    let b64: String = body.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "the PEM body is not base64".to_string())?;
    if der.len() != 48 || der[..16] != PKCS8_ED25519_PREFIX {
        return Err("not an ed25519 PKCS#8 key".into());
    }
    Ok(der)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(target: "axl", path = %path.display(), "AXL key file is readable by other users; consider chmod 600");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_matches_the_openssl_layout() {
        let pem = encode_pem(&[7u8; 32]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], PEM_BEGIN);
        assert_eq!(lines[2], PEM_END);
        // The fixed DER prefix always encodes to this base64 start.
        assert!(
            lines[1].starts_with("MC4CAQAwBQYDK2VwBCIEI"),
            "{}",
            lines[1]
        );
        assert!(check_pem(&pem).is_ok());
    }

    #[test]
    fn check_pem_rejects_other_keys() {
        assert!(check_pem("hello").is_err());
        let rsa_like =
            format!("{PEM_BEGIN}\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n{PEM_END}\n");
        assert!(check_pem(&rsa_like).is_err());
    }
}
