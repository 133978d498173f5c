"""The tree is formatted and lint-clean under the ruff settings of pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    beside = Path(sys.executable).with_name("ruff")  # the venv's, installed by `scripts/setup.sh --dev`
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    assert found, "ruff is not installed; run `bash scripts/setup.sh --dev` (requirements-dev.txt pins it)"
    return found


def test_ruff_lint_is_clean() -> None:
    result = subprocess.run([_ruff(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = subprocess.run([_ruff(), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"run `ruff format .`:\n{result.stdout}{result.stderr}"
