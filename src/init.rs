//! `edgent init`: a first run's setup. It creates (or imports) the node's wallet as a key
//! file (mode 0600) in the data directory, and the API token ([`API_TOKEN_FILE`], 0600:
//! what the CLI, `edgent mcp` and the dashboard present, see [`crate::guard`]), and writes
//! `.env` from `.env.example` with the role, ENS name and payment mode chosen, pointing
//! `WALLET_KEY_PATH` and `EDGENT_API_TOKEN_PATH` at them. It refuses to overwrite an
//! existing `.env` or key file unless forced (an existing token file is kept), and checks
//! the result is a configuration the daemon accepts before writing anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

use crate::chain::Secret;
pub use crate::config::API_TOKEN_FILE;
use crate::config::{Config, ConfigError, PaymentsMode, Role, Sources};

/// `.env.example`, embedded so an installed binary can write a `.env` anywhere.
pub const ENV_EXAMPLE: &str = include_str!("../.env.example");

/// The key file's name in the data directory.
pub const WALLET_KEY_FILE: &str = "wallet.key";

/// What `edgent init` is asked to do.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The `.env` to write.
    pub env_file: PathBuf,
    /// `EDGENT_DATA_DIR`; the key goes there unless `key_path` says otherwise.
    pub data_dir: PathBuf,
    /// Where the key file goes (default `<data_dir>/wallet.key`).
    pub key_path: Option<PathBuf>,
    /// `EDGENT_ROLE`.
    pub role: Role,
    /// `EDGENT_ENS_NAME`.
    pub ens_name: Option<String>,
    /// `EDGENT_PAYMENTS`.
    pub payments: PaymentsMode,
    /// A key to import instead of making a new one.
    pub import_key: Option<Secret>,
    /// Further settings written into `.env`, `KEY=VALUE`.
    pub set: Vec<(String, String)>,
    /// Overwrite an existing `.env` and key file.
    pub force: bool,
    /// When the key file exists, use its key instead of refusing (for installers re-run
    /// after the `.env` was removed). The file is left as it is.
    pub keep_key: bool,
}

/// What `edgent init` did.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    /// The wallet's address.
    pub address: Address,
    /// The key file (absolute).
    pub key_path: PathBuf,
    /// The `.env` written.
    pub env_file: PathBuf,
    /// The API token's file (absolute).
    pub token_path: PathBuf,
    /// Whether the key was imported (else generated).
    pub imported: bool,
    /// Whether an existing key file was kept (`keep_key`).
    pub kept: bool,
}

/// Why `edgent init` did not run.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file it would write exists already.
    #[error("{0} exists already; pass --force to overwrite it")]
    Exists(PathBuf),
    /// The imported key does not parse (the key is not repeated).
    #[error("the imported key is not a valid private key (expected 32 bytes of hex)")]
    InvalidKey,
    /// A `--set` entry is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadSet(String),
    /// The settings chosen do not make a valid configuration.
    #[error("the settings chosen are not valid: {0}")]
    Config(#[from] ConfigError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `.env.example` with each `KEY=` line of `values` replaced (or appended when the example
/// has no such line).
pub fn render_env(example: &str, values: &[(String, String)]) -> String {
    let mut out = String::with_capacity(example.len() + 256);
    let mut done = vec![false; values.len()];
    for line in example.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key.and_then(|k| values.iter().position(|(vk, _)| vk == k)) {
            Some(i) if !line.trim_start().starts_with('#') => {
                out.push_str(&format!("{}={}\n", values[i].0, quote(&values[i].1)));
                done[i] = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let rest: Vec<_> = values.iter().zip(&done).filter(|(_, d)| !**d).collect();
    if !rest.is_empty() {
        out.push_str("\n# --- set by `edgent init` ---\n");
        for ((k, v), _) in rest {
            out.push_str(&format!("{k}={}\n", quote(v)));
        }
    }
    out
}

/// A value as `.env` needs it: quoted when it has spaces, `#` or quotes.
fn quote(v: &str) -> String {
    if v.contains(|c: char| c.is_whitespace() || c == '#' || c == '"' || c == '\'') {
        format!("'{}'", v.replace('\'', ""))
    } else {
        v.to_string()
    }
}

/// Run `edgent init`.
pub fn init(opts: &InitOptions) -> Result<InitOutcome, InitError> {
    let key_path = opts
        .key_path
        .clone()
        .unwrap_or_else(|| opts.data_dir.join(WALLET_KEY_FILE));
    let kept = opts.keep_key && !opts.force && key_path.exists();
    if opts.env_file.exists() && !opts.force {
        return Err(InitError::Exists(opts.env_file.clone()));
    }
    if key_path.exists() && !opts.force && !kept {
        return Err(InitError::Exists(key_path.clone()));
    }
    let (signer, imported) = if kept {
        let text = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = Secret::new(text.trim());
        (key.to_signer().map_err(|_| InitError::InvalidKey)?, false)
    } else {
        match &opts.import_key {
            Some(k) => (k.to_signer().map_err(|_| InitError::InvalidKey)?, true),
            None => (PrivateKeySigner::random(), false),
        }
    };
    std::fs::create_dir_all(&opts.data_dir).map_err(io(&opts.data_dir))?;
    if let Some(parent) = key_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let data_dir = std::fs::canonicalize(&opts.data_dir).map_err(io(&opts.data_dir))?;
    let key_abs = match key_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::canonicalize(parent)
            .map_err(io(parent))?
            .join(key_path.file_name().unwrap_or_default()),
        None => std::env::current_dir()
            .map_err(io(&key_path))?
            .join(&key_path),
    };

    let token_path = data_dir.join(API_TOKEN_FILE);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => None,
        _ => Some(new_token()?),
    };

    let mut values: Vec<(String, String)> = vec![
        ("EDGENT_DATA_DIR".into(), data_dir.display().to_string()),
        ("EDGENT_ROLE".into(), opts.role.as_str().into()),
        (
            "EDGENT_ENS_NAME".into(),
            opts.ens_name.clone().unwrap_or_default(),
        ),
        ("EDGENT_PAYMENTS".into(), opts.payments.as_str().into()),
        ("WALLET_PRIVATE_KEY".into(), String::new()),
        ("WALLET_KEY_PATH".into(), key_abs.display().to_string()),
        ("EDGENT_API_TOKEN".into(), String::new()),
        (
            "EDGENT_API_TOKEN_PATH".into(),
            token_path.display().to_string(),
        ),
    ];
    for (k, v) in &opts.set {
        match values.iter_mut().find(|(vk, _)| vk == k) {
            Some(slot) => slot.1 = v.clone(),
            None => values.push((k.clone(), v.clone())),
        }
    }
    let rendered = render_env(ENV_EXAMPLE, &values);

    // Check the result is a configuration the daemon takes, before writing anything. The
    // key file does not exist yet, so the check sees the key itself instead of its path.
    let mut dotenv: HashMap<String, String> = HashMap::new();
    for item in dotenvy::from_read_iter(rendered.as_bytes()) {
        let (k, v) = item.map_err(|source| {
            InitError::Config(ConfigError::EnvFile {
                path: opts.env_file.clone(),
                source,
            })
        })?;
        dotenv.insert(k, v);
    }
    dotenv.remove("WALLET_KEY_PATH");
    if let Some(t) = &token {
        dotenv.remove("EDGENT_API_TOKEN_PATH");
        dotenv.insert("EDGENT_API_TOKEN".into(), t.clone());
    }
    let hex_key = format!("0x{}", alloy::primitives::hex::encode(signer.to_bytes()));
    dotenv.insert("WALLET_PRIVATE_KEY".into(), hex_key.clone());
    Config::from_sources(&Sources {
        dotenv,
        ..Default::default()
    })?;

    if !kept {
        write_private(&key_abs, &format!("{hex_key}\n"), opts.force)?;
    }
    if let Some(t) = &token {
        write_private(&token_path, &format!("{t}\n"), true)?;
    }
    if let Some(parent) = opts.env_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    write_private(&opts.env_file, &rendered, opts.force)?;
    Ok(InitOutcome {
        address: signer.address(),
        key_path: key_abs,
        env_file: opts.env_file.clone(),
        token_path,
        imported,
        kept,
    })
}

/// A new API token: 32 random bytes, hex.
fn new_token() -> Result<String, InitError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| InitError::Io {
        path: PathBuf::from(API_TOKEN_FILE),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(alloy::primitives::hex::encode(bytes))
}

/// Write `text` to `path` with mode 0600 (created new unless `overwrite`).
fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), InitError> {
    crate::files::write_private(path, text, overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::Exists(path.to_owned())
        } else {
            InitError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            env_file: dir.join(".env"),
            data_dir: dir.join("data"),
            key_path: None,
            role: Role::Provider,
            ens_name: Some("dell-g15.edgent.eth".into()),
            payments: PaymentsMode::Auto,
            import_key: None,
            set: vec![],
            force: false,
            keep_key: false,
        }
    }

    #[test]
    fn writes_a_private_key_and_an_env_the_daemon_reads() {
        let dir = tempfile::tempdir().unwrap();
        let out = init(&opts(dir.path())).unwrap();
        let mode = std::fs::metadata(&out.key_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dotenv: HashMap<String, String> = dotenvy::from_path_iter(&out.env_file)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let c = Config::from_sources(&Sources {
            dotenv,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.node.role, Role::Provider);
        assert_eq!(c.payments_mode, PaymentsMode::Auto);
        assert_eq!(c.node.ens_name.as_deref(), Some("dell-g15.edgent.eth"));
        let chain = c.payments.chain().unwrap();
        assert_eq!(chain.wallet_signer().unwrap().address(), out.address);
        assert!(!out.imported);
        // The API token: a 0600 file the daemon's configuration reads.
        let token_mode = std::fs::metadata(&out.token_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(token_mode & 0o777, 0o600);
        let token = std::fs::read_to_string(&out.token_path).unwrap();
        assert_eq!(token.trim().len(), 64);
        assert_eq!(
            c.front.token.as_ref().map(|t| t.expose()),
            Some(token.trim())
        );
        assert_eq!(
            out.token_path,
            std::fs::canonicalize(dir.path().join("data"))
                .unwrap()
                .join(API_TOKEN_FILE)
        );
    }

    #[test]
    fn refuses_to_overwrite_without_force_and_imports_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(&opts(dir.path())).unwrap();
        let e = init(&opts(dir.path())).unwrap_err();
        assert!(matches!(e, InitError::Exists(_)), "{e}");
        // The key is untouched.
        let key = std::fs::read_to_string(&first.key_path).unwrap();
        let mut o = opts(dir.path());
        o.force = true;
        o.import_key = Some(Secret::new(
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        ));
        let second = init(&o).unwrap();
        assert!(second.imported);
        assert_eq!(
            format!("{:#x}", second.address),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        assert_ne!(std::fs::read_to_string(&second.key_path).unwrap(), key);
        o.import_key = Some(Secret::new("nothex"));
        assert!(matches!(init(&o), Err(InitError::InvalidKey)));
    }

    #[test]
    fn keep_key_reuses_an_existing_key_and_never_an_existing_env() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(&opts(dir.path())).unwrap();
        let key = std::fs::read_to_string(&first.key_path).unwrap();
        let mut o = opts(dir.path());
        o.keep_key = true;
        // The .env exists: refused even with keep_key.
        assert!(matches!(init(&o), Err(InitError::Exists(p)) if p == o.env_file));
        std::fs::remove_file(&o.env_file).unwrap();
        let again = init(&o).unwrap();
        assert!(again.kept && !again.imported);
        assert_eq!(again.address, first.address);
        assert_eq!(std::fs::read_to_string(&again.key_path).unwrap(), key);
        let env = std::fs::read_to_string(&o.env_file).unwrap();
        assert!(env.contains(&format!("WALLET_KEY_PATH={}", again.key_path.display())));
        // Without a key file, keep_key makes one.
        let fresh = tempfile::tempdir().unwrap();
        let mut o = opts(fresh.path());
        o.keep_key = true;
        let made = init(&o).unwrap();
        assert!(!made.kept);
        assert!(made.key_path.exists());
    }

    #[test]
    fn bad_choices_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.ens_name = Some("not an ens name".into());
        let e = init(&o).unwrap_err();
        assert!(e.to_string().contains("EDGENT_ENS_NAME"), "{e}");
        assert!(!o.env_file.exists());
        assert!(!dir.path().join("data").join(WALLET_KEY_FILE).exists());
    }

    #[test]
    fn render_replaces_lines_and_appends_new_ones() {
        let text = render_env(
            "# A=1 in a comment\nA=1\nB=2\n",
            &[("A".into(), "x y".into()), ("C".into(), "3".into())],
        );
        assert_eq!(
            text,
            "# A=1 in a comment\nA='x y'\nB=2\n\n# --- set by `edgent init` ---\nC=3\n"
        );
    }
}
