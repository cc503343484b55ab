import subprocess
import sys

import pytest

from aimi.settings import Settings


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_api_keys_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMI_API_KEY", " k1, k2 ,,")
    assert Settings().api_key == ["k1", "k2"]


def test_importing_aimi_imports_no_engine_library() -> None:
    code = (
        "import sys, aimi.server, aimi.cli; "
        "print(sorted(m for m in ('xllamacpp', 'torch', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
