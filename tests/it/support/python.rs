//! The Python of the tests: the venv `scripts/python-venv.sh` makes from
//! tests/python/requirements.txt (the official `ollama`, `openai`, `mcp` and `x402`
//! packages, and what `scripts/make-test-models.py` needs). The one place that picks it.

use std::path::PathBuf;

use super::cached_file;

/// The test venv's python: `EDGENT_TEST_PYTHON`, or where `scripts/python-venv.sh` puts it
/// (under `EDGENT_CACHE`, default `~/.cache/edgent`). Panics (fails the test) when it is
/// missing: these tests never skip.
pub fn test_python() -> PathBuf {
    cached_file(
        "EDGENT_TEST_PYTHON",
        "python-venv/bin/python",
        "the test venv",
        "python-venv.sh",
    )
}
