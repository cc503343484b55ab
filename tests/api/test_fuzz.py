"""Every operation of the OpenAPI document, fuzzed by schemathesis against a live aimi on the fake
engine: positive and negative data, a fixed seed, a bounded number of cases.

Each case must answer without a 5xx, with a status, a content type and a body the document
describes. Streams are checked event by event: the document's ``text/event-stream`` schema
describes one event, whose ``data`` is ``[DONE]`` or JSON valid against the chunk (or error)
schema named by ``contentSchema``, and schemathesis validates every event of a streamed answer
against it. About 10,000 cases (the operations times ``max_examples``, plus schemathesis's own
coverage cases) in about 70 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aimi.server.openapi import build
from tests.conftest import KEY, InProcessServer, in_process

schema = schemathesis.openapi.from_dict(build())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Quotas off (0) so that thousands of cases are answered rather than limited; one chat deployment.
SETTINGS = {"quota_requests_per_minute": 0, "quota_tokens_per_minute": 0, "engine_options": {"text": "ok fine"}}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process(SETTINGS) as running:
        yield running


@schema.parametrize()
@hypothesis.settings(
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, server: InProcessServer) -> None:
    case.call_and_validate(base_url=server.url, headers={"api-key": KEY}, checks=CHECKS, timeout=10)
