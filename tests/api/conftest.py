"""Test-harness guard for the in-process servers of tests/api.

CPython 3.11 before 3.11.9 keeps the AST constructor's recursion depth in per-interpreter state
(gh-106905). Python 3.11's ``traceback`` calls ``ast.parse`` to place its ``^^^^`` carets, and
pytest calls it too when it shows a failing test's source. When a server thread logs a traceback
(a 500, a broken stream) while the main thread reports a failure, the two race and pytest dies
with ``INTERNALERROR> SystemError: AST constructor recursion depth mismatch``.

So log records made off the main thread get their traceback text formatted up front, without
carets (no ``ast.parse``); handlers then print that text. Nothing else about logging changes.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest


def _without_carets(exc: traceback.TracebackException) -> None:
    seen: set[int] = set()
    pending: list[traceback.TracebackException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        for frame in current.stack:
            frame.colno = None  # no column: traceback draws no carets, so it parses nothing
        pending += [current.__cause__, current.__context__]


def _format(exc_info: Any) -> str:
    exc = traceback.TracebackException(*exc_info, capture_locals=False)
    _without_carets(exc)
    return "".join(exc.format()).rstrip("\n")


@pytest.fixture(scope="session", autouse=True)
def _server_tracebacks_without_ast() -> Iterator[None]:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if (
            record.exc_info
            and record.exc_info[0] is not None
            and threading.current_thread() is not threading.main_thread()
        ):
            record.exc_text = _format(record.exc_info)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)
