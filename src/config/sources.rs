//! Where the settings come from: `.env` < the environment < command-line flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Where the settings come from, lowest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Values from the `.env` file.
    pub dotenv: HashMap<String, String>,
    /// The process environment.
    pub env: HashMap<String, String>,
    /// Command-line flags (`--set KEY=VALUE` and named flags).
    pub flags: HashMap<String, String>,
}

impl Sources {
    /// The process environment plus `.env` in the current directory (or the file named
    /// by `EDGENT_ENV_FILE`), when it exists.
    pub fn from_process() -> Result<Sources, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let path = env
            .get("EDGENT_ENV_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".env"));
        let dotenv = read_dotenv(&path)?;
        Ok(Sources {
            dotenv,
            env,
            flags: HashMap::new(),
        })
    }

    /// The value of a setting: flags, then environment, then `.env`. Empty means unset.
    pub fn get(&self, key: &str) -> Option<String> {
        [&self.flags, &self.env, &self.dotenv]
            .into_iter()
            .find_map(|m| m.get(key).filter(|v| !v.trim().is_empty()).cloned())
    }
}

pub(super) fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let iter = dotenvy::from_path_iter(path).map_err(|source| ConfigError::EnvFile {
        path: path.to_owned(),
        source,
    })?;
    let mut out = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|source| ConfigError::EnvFile {
            path: path.to_owned(),
            source,
        })?;
        out.insert(k, v);
    }
    Ok(out)
}
