"""The web console's compiled assets (``static/``), built from ``console/`` at the repository's
root by ``npm run build`` and shipped in the wheel: serving them needs no Node and no network."""

from __future__ import annotations

from importlib.resources import files

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""Every file the console has, with its media type: nothing else is ever served."""

PATHS = frozenset({"/", "/console/app.js", "/console/app.css"})
"""Where the server serves them (``/`` is index.html): public paths, like ``/health``."""


def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS`."""
    if name not in ASSETS:
        raise KeyError(name)
    return files(__name__).joinpath("static", name).read_bytes()
