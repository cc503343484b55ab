"""The KubeRay example passes its check, and the check fails a manifest that is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_kuberay.py"
EXAMPLE = ROOT / "examples" / "kuberay" / "rayservice.yaml"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120)


def test_the_example_manifest_passes() -> None:
    done = _check(EXAMPLE)
    assert done.returncode == 0, done.stderr
    assert "ok: serveConfigV2: valid for Ray Serve (1 application(s))" in done.stdout
    assert "aimi: aimi.scale:build reads /etc/aimi/aimi.toml" in done.stdout


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('rayVersion: "2.60.0"', 'rayVersion: "2.9.0"', "rayVersion 2.9.0 is not 2.60.0"),
        ("route_prefix: /", "route_prefix: 7", "route_prefix"),
        ("max_replicas = 4", "max_replicas = 0", "deployments[0] ('chat').scale.max_replicas"),
        ("mountPath: /etc/aimi", "mountPath: /etc/elsewhere", "/etc/aimi is not mounted in ray-head"),
        (
            "                  value: redis\n",
            "                  value: memory\n",
            "gateway.replicas = 2: several gateway replicas must share their quotas",
        ),
    ],
)
def test_a_wrong_manifest_fails_naming_the_problem(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    broken = tmp_path / "rayservice.yaml"
    broken.write_text(text.replace(old, new, 1))
    done = _check(broken)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
