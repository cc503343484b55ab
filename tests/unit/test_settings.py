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


def test_limits_quota_and_defaults_keep_their_flat_names(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIMI_MAX_TOKENS_LIMIT", "100")
    monkeypatch.setenv("AIMI_QUOTA_MAX_CONCURRENT", "3")
    monkeypatch.setenv("AIMI_DEFAULT_TEMPERATURE", "0.1")
    settings = Settings(max_queue=0, quota_tokens_per_minute=0)
    assert (settings.limits.max_tokens, settings.limits.max_queue, settings.limits.max_n) == (100, 0, 8)
    assert (settings.quota.requests_per_minute, settings.quota.tokens_per_minute) == (1000, None)
    assert settings.quota.max_concurrent == 3
    assert (settings.defaults.temperature, settings.defaults.top_p) == (0.1, None)
