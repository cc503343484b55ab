import stat
from pathlib import Path

import pytest

from aimi.auth.keys import KeyVerifier, load_or_create_key, read_key


def test_verifier_accepts_each_configured_key_and_nothing_else() -> None:
    verifier = KeyVerifier(["alpha", "beta"])
    assert verifier.verify("alpha") and verifier.verify("beta")
    assert not verifier.verify("alph") and not verifier.verify("") and not verifier.verify("alphaX")


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError):
        KeyVerifier([])


def test_generated_key_is_32_chars_private_and_stable(tmp_path: Path) -> None:
    key, created = load_or_create_key(tmp_path / "home")
    assert created and len(key) == 32
    assert stat.S_IMODE((tmp_path / "home" / "api-key").stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "home") == (key, False)
    assert read_key(tmp_path / "home") == key
    assert read_key(tmp_path / "elsewhere") is None
