#!/usr/bin/env bash
# Every test suite crema has, as README.md says and .ci/run runs:
#   1. Rust: cargo test --workspace
#   2. Python: a virtual environment in .venv (made when missing), the package built and installed into it with
#      `pip install .[test]` (maturin builds the extension in release mode), then pytest on python/tests.
# A suite that cannot run says why and fails the run: nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --workspace"
cargo test --workspace

echo "== Python: the crema and caffe packages in .venv"
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "The Python suite cannot run: no $python on PATH (set PYTHON=/path/to/python3.9+)." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv; then
        echo "The Python suite cannot run: '$python -m venv' failed (on Debian: apt-get install python3-venv)." >&2
        exit 1
    fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check ".[test]"
.venv/bin/python -m pytest python/tests -q
