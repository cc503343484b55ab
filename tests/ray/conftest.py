"""One local Ray cluster for the whole Ray suite (``pytest -m ray tests/ray``): two logical CPUs,
no dashboard, Serve's HTTP proxy on a free port; always shut down, every wait bounded.

Without Ray installed each test is skipped, saying how to install it; with Ray, the suite runs
only when selected with ``-m ray`` (it takes minutes), and is skipped otherwise, saying so.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from tests.conftest import free_port

HAVE_RAY = importlib.util.find_spec("ray") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    selected = "ray" in (config.option.markexpr or "")
    for item in items:
        if not str(item.path).startswith(here):
            continue
        # Ray's own modules still use APIs their dependencies deprecated; aimi's warnings stay errors.
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"))
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic"))
        if not HAVE_RAY:
            item.add_marker(pytest.mark.skip(reason="needs Ray Serve: pip install -e '.[ray]'"))
        elif not selected:
            item.add_marker(pytest.mark.skip(reason="the Ray suite runs with -m ray (a local cluster, minutes)"))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[int]:
    """A local cluster with Serve started; the proxy's port."""
    import ray
    from ray import serve

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
