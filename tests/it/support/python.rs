//! The Python of the tests: the venv `scripts/python-venv.sh` makes from
//! tests/python/requirements.txt (the official `ollama`, `openai`, `mcp` and `x402`
//! packages, and what `scripts/make-test-models.py` needs). The one place that picks it.

use std::path::PathBuf;

use super::cache_root;

/// The test venv's python: `EDGENT_TEST_PYTHON`, or where `scripts/python-venv.sh` puts it
/// (under `EDGENT_CACHE`, default `~/.cache/edgent`). Panics (fails the test) when it is
/// missing: these tests never skip.
pub fn test_python() -> PathBuf {
    let py = std::env::var_os("EDGENT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join("python-venv/bin/python"));
    assert!(
        py.is_file(),
        "the test venv is missing at {}: run `bash scripts/python-venv.sh` \
         (scripts/test.sh does) or set EDGENT_TEST_PYTHON",
        py.display()
    );
    py
}
