"""Suite-wide checks. The data pipeline shells out to Debian tools (mmseqs2 for homology clustering and
leakage reports, ncbi-blast+ for BLAST databases); their tests skip when a tool is missing, and a suite that
passes by skipping them would hide that. So a run that skipped any of them FAILS, with a banner naming what
to install, unless PROTEIN_LLM_ALLOW_MISSING_TOOLS=1 says the user accepts it (then the skips are reported).

Checked by tests/test_missing_tools.py (pytest in a subprocess, PATH without the tools).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

ALLOW_ENV = "PROTEIN_LLM_ALLOW_MISSING_TOOLS"
# executable -> the Debian package that provides it (`make setup` installs them when it can)
TOOLS = {"mmseqs": "mmseqs2", "makeblastdb": "ncbi-blast+", "blastdbcmd": "ncbi-blast+"}
# what this run found missing, and the tests it skipped for them (hooks without `config` read it)
_STATE: dict[str, Any] = {"missing": {}, "skipped": [], "packages": set()}


def missing_tools() -> dict[str, str]:
    return {tool: package for tool, package in TOOLS.items() if shutil.which(tool) is None}


def _allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip() not in ("", "0")


def _packages_needed(reason: str, missing: dict[str, str]) -> set[str]:
    """The missing packages a skip reason names (by tool or package: "mmseqs2 not installed")."""
    return {package for tool, package in missing.items() if tool in reason or package in reason}


def pytest_configure(config: pytest.Config) -> None:
    _STATE.update(missing=missing_tools(), skipped=[], packages=set())


def pytest_report_header(config: pytest.Config) -> list[str]:
    missing = _STATE["missing"]
    if not missing:
        return []
    packages = " ".join(sorted(set(missing.values())))
    then = "their tests are skipped (allowed)" if _allowed() else "this run FAILS if it skips their tests"
    return [f"MISSING TOOLS: {', '.join(sorted(missing))} (apt-get install {packages}); {then}"]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record_skip(report)  # a module skipped as a whole while collecting


def _record_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or not isinstance(report.longrepr, tuple) or not _STATE["missing"]:
        return
    reason = str(report.longrepr[2])
    packages = _packages_needed(reason, _STATE["missing"])
    if packages:
        _STATE["packages"] |= packages
        _STATE["skipped"].append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _STATE["skipped"]:
        return
    packages = " ".join(sorted(_STATE["packages"]))
    count = len(_STATE["skipped"])
    write = terminalreporter.write_line
    if _allowed():
        terminalreporter.section("skipped for missing tools (allowed)", sep="-")
        write(f"{count} test(s) skipped: {packages} not installed, {ALLOW_ENV}=1:")
    else:
        terminalreporter.section("MISSING TOOLS: tests skipped, run FAILED", sep="!", red=True, bold=True)
        write(
            f"{count} test(s) need {packages}, which is not installed: install it (sudo apt-get install "
            f"{packages}; `make setup` does when it can), or set {ALLOW_ENV}=1 to run without these tests.",
            red=True,
            bold=True,
        )
    for line in _STATE["skipped"]:
        write(f"  {line}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Runs before the terminal summary: the failure shows in the exit status `make test` checks.
    if _STATE["skipped"] and not _allowed() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
