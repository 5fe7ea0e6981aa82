"""Shared helpers of the Python tests: nets written to temporary folders, the repository's paths, and the
``crema`` command of this environment."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def write(tmp_path):
    """``write(name, text)`` writes dedented ``text`` to ``tmp_path/name`` and returns the path as a string."""

    def write_file(name, text):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write_file


def crema_command(*args, cwd=None, env=None):
    """Runs this environment's ``crema`` console script (the one the wheel installs) and returns the
    completed process, output captured."""
    script = shutil.which("crema", path=os.path.dirname(sys.executable))
    assert script, f"no crema console script beside {sys.executable}"
    return subprocess.run(
        [script, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
