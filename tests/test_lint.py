"""The repository under its linter and the engine under its type checker (issue 13).

``ruff check`` over the repository with ``ruff.toml`` and ``mypy`` over the ``normconf`` package with
``mypy.ini``, both from the repository root; a finding fails the test with the tool's own output. The
tools are found next to the running Python (the venv's ``bin/``) or on ``PATH``; where one is not
installed, its test is skipped and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    """The path of the executable ``name``: beside this interpreter first, so that the venv's pinned
    version is the one that runs, then on PATH; the test is skipped when there is none."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements.txt installs it)")
    return found


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_ruff_check_finds_nothing():
    config = ROOT / "ruff.toml"
    assert config.is_file(), f"{config} is missing"
    done = run([tool("ruff"), "check", "--config", str(config), "--no-cache", "--output-format", "concise", "."],
               timeout=120)
    assert done.returncode == 0, f"ruff check found problems (ruff.toml):\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing():
    config = ROOT / "mypy.ini"
    assert config.is_file(), f"{config} is missing"
    # The files to check come from mypy.ini (files = normconf); no cache directory in the checkout.
    done = run([tool("mypy"), "--config-file", str(config), "--cache-dir", os.devnull], timeout=600)
    assert done.returncode == 0, f"mypy found problems (mypy.ini):\n{done.stdout}{done.stderr}"
