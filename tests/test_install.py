"""The README's install commands resolve to what the docs promise: the GPU command to one
TensorFlow distribution built with CUDA, plus NVIDIA's libraries as pip packages."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def _readme_command(extra: str) -> list[str]:
    """The README's `pip install -e '.[extra]'` command, split as a shell would."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"`(pip install -e '\.\[{extra}\]')`", readme)
    assert found, f"the README shows no `pip install -e '.[{extra}]'`"
    return shlex.split(found.group(1))


@pytest.mark.slow
def test_the_readme_gpu_install_resolves_to_tensorflow_with_nvidias_libraries(tmp_path):
    pip, install, *rest = _readme_command("gpu")
    assert (pip, install) == ("pip", "install")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--report", str(report), *rest],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    unreachable = re.search(r"connection|name resolution|unreachable", done.stderr, re.IGNORECASE)
    if done.returncode != 0 and unreachable:
        require(False, "needs the package index, which pip could not reach")
    assert done.returncode == 0, done.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "tensorflow" in names and "tensorflow-cpu" not in names
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-nccl-cu12"} <= names
