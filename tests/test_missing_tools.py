"""Tests that need mmseqs2 do not pass by skipping: pytest on the homology tests with PATH holding no
Debian tools fails loudly (tests/conftest.py), unless PROTEIN_LLM_ALLOW_MISSING_TOOLS=1, which reports the
skips and passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOMOLOGY = "tests/data/test_homology.py"  # every test in it skips without mmseqs


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k != "PROTEIN_LLM_ALLOW_MISSING_TOOLS"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", HOMOLOGY],
        cwd=REPO,
        env={**base, "PATH": str(empty), **env},  # no mmseqs, no BLAST on PATH
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_skipping_tests_for_missing_tools_fails_the_run(tmp_path):
    result = _pytest(tmp_path)
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "skipped" in out and "passed" not in out  # the tests only skipped, yet the run failed
    assert "MISSING TOOLS: tests skipped, run FAILED" in out
    assert "need mmseqs2, which is not installed" in out and "PROTEIN_LLM_ALLOW_MISSING_TOOLS=1" in out
    assert "test_homology.py::test_leakage_report_finds_planted_leak: mmseqs2 not installed" in out


def test_the_opt_out_reports_the_skips_and_passes(tmp_path):
    result = _pytest(tmp_path, PROTEIN_LLM_ALLOW_MISSING_TOOLS="1")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "skipped for missing tools (allowed)" in out and "run FAILED" not in out
    assert "mmseqs2 not installed, PROTEIN_LLM_ALLOW_MISSING_TOOLS=1" in out
    assert "test_homology.py::test_leakage_report_finds_planted_leak" in out
