"""The examples written for pycaffe run unchanged with crema's caffe module."""

import shutil
import subprocess
import sys

from conftest import EXAMPLES


def test_the_learning_lenet_notebook_as_a_script(tmp_path):
    shutil.copytree(EXAMPLES / "pycaffe-lenet", tmp_path / "pycaffe-lenet", ignore=shutil.ignore_patterns("out"))
    shutil.copytree(EXAMPLES / "imbalanced-digits", tmp_path / "imbalanced-digits",
                    ignore=shutil.ignore_patterns("out"))
    done = subprocess.run(
        [sys.executable, "lenet.py"], cwd=tmp_path / "pycaffe-lenet", capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[('data', (64, 1, 8, 8)), ('label', (64,))")
    assert "[('conv1', (20, 1, 3, 3)), ('conv2', (50, 20, 2, 2)), ('fc1', (500, 50)), ('score', (10, 500))]" in lines
    accuracy = float(lines[-1].split()[-1])
    assert accuracy > 0.75, done.stdout
    assert "crema runs on the CPU" in done.stderr
    assert (tmp_path / "pycaffe-lenet" / "out" / "lenet_auto_solver.prototxt").exists()
