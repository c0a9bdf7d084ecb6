"""The suite's own rule: a test whose system facility is missing skips with its reason on a
user's machine, and fails where CI asks for every test (CHARLSTM_TESTS_REQUIRE_ALL=1)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_needing_a_missing_program(tmp_path, require_all: bool):
    test = tmp_path / "test_needs.py"
    test.write_text(
        "from tests.conftest import require\n\n"
        "def test_needs_a_program():\n"
        "    require(False, 'needs a program this machine lacks')\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "CHARLSTM_TESTS_REQUIRE_ALL"}
    if require_all:
        env["CHARLSTM_TESTS_REQUIRE_ALL"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip


def test_a_missing_facility_skips_with_its_reason(tmp_path):
    done = _run_needing_a_missing_program(tmp_path, require_all=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout and "needs a program this machine lacks" in done.stdout


def test_under_require_all_a_missing_facility_fails(tmp_path):
    done = _run_needing_a_missing_program(tmp_path, require_all=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed" in done.stdout and "needs a program this machine lacks" in done.stdout
