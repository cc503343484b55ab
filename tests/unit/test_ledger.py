"""The usage ledger's writer (batches, retries, a bounded buffer, what stop() loses), its SQLite
store (migrations, idempotent inserts) and its report (totals by key, deployment and day)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aimi.usage import report, store
from aimi.usage.ledger import Ledger
from aimi.usage.records import UsageRecord
from tests.conftest import wait_until

SETTLE = 5.0


def record(n: int, **changes: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "id": f"req-{n}",
        "time": datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        "key": "key-1",
        "deployment": "chat",
        "model": "Fake-Model",
        "surface": "azure",
        "route": "chat",
        "status": 200,
        "outcome": "ok",
        "prompt_tokens": 4,
        "completion_tokens": 12,
        "latency_ms": 12.5,
        "ttft_ms": 3.25,
        "cost": None,
        **changes,
    }
    return UsageRecord(**values)


class FakeDatabase:
    """A writer that keeps what it was given; ``down`` makes it raise, ``gate`` makes it wait."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.calls = 0
        self.down = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def write(self, records: Sequence[UsageRecord]) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(SETTLE), "the test never opened the gate"
        if self.down:
            raise ConnectionError("the database is down")
        self.batches.append([r.id for r in records])

    @property
    def written(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def stopped() -> Iterator[list[Ledger]]:
    """Ledgers to stop after the test, whatever happened in it."""
    ledgers: list[Ledger] = []
    yield ledgers
    for ledger in ledgers:
        ledger.stop(deadline=0)


def started(ledgers: list[Ledger], ledger: Ledger) -> Ledger:
    ledgers.append(ledger)
    ledger.start()
    return ledger


# --- the writer -----------------------------------------------------------------------------


def test_record_returns_while_the_writer_is_blocked_and_batches_are_written_in_order(
    db: FakeDatabase, stopped: list[Ledger]
) -> None:
    db.gate = threading.Event()
    ledger = started(stopped, Ledger(db.write, batch=3, interval=0.01))
    ledger.record(record(0))
    assert db.entered.wait(SETTLE)  # the writer holds record 0 and waits on the gate

    def record_seven_more() -> None:
        for n in range(1, 8):
            ledger.record(record(n))

    caller = threading.Thread(target=record_seven_more)
    caller.start()
    caller.join(SETTLE)
    assert not caller.is_alive(), "record() waited for the blocked writer"
    assert db.calls == 1 and db.batches == []
    assert ledger.pending == 8 and ledger.written == 0

    db.gate.set()
    wait_until(lambda: ledger.written == 8, SETTLE, "eight records written")
    # The batch in flight, then full batches at once, then the rest at the next interval.
    assert db.batches == [["req-0"], ["req-1", "req-2", "req-3"], ["req-4", "req-5", "req-6"], ["req-7"]]
    assert (ledger.pending, ledger.dropped, ledger.failures, ledger.healthy) == (0, 0, 0, True)


def test_a_full_batch_is_written_without_waiting_for_the_interval(db: FakeDatabase, stopped: list[Ledger]) -> None:
    ledger = started(stopped, Ledger(db.write, batch=3, interval=60))
    for n in range(3):
        ledger.record(record(n))
    wait_until(lambda: ledger.written == 3, SETTLE, "the full batch")
    assert db.batches == [["req-0", "req-1", "req-2"]]
    ledger.record(record(3))  # less than a batch: it waits for the interval (or stop)
    assert ledger.pending == 1
    ledger.stop()
    assert db.batches == [["req-0", "req-1", "req-2"], ["req-3"]]
    assert (ledger.written, ledger.pending, ledger.dropped) == (4, 0, 0)


def test_a_failing_writer_keeps_the_records_and_retries_until_it_succeeds(
    db: FakeDatabase, stopped: list[Ledger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "aimi.usage.ledger")
    db.down = True
    ledger = Ledger(db.write, batch=2, interval=0.01, max_backoff=0.01)
    for n in range(5):
        ledger.record(record(n))
    started(stopped, ledger)
    wait_until(lambda: ledger.failures >= 3, SETTLE, "three failed writes")
    assert not ledger.healthy
    assert (ledger.pending, ledger.written, ledger.dropped) == (5, 0, 0)
    assert db.written == []

    db.down = False
    wait_until(lambda: ledger.written == 5, SETTLE, "the kept records written")
    assert db.written == ["req-0", "req-1", "req-2", "req-3", "req-4"]  # each once, in order
    assert db.batches == [["req-0", "req-1"], ["req-2", "req-3"], ["req-4"]]
    assert (ledger.pending, ledger.dropped, ledger.healthy) == (0, 0, True)
    messages = [r.getMessage() for r in caplog.records]
    # One error when it breaks (not one per retry), one warning when it recovers.
    assert messages == [
        "usage ledger cannot write (the database is down); 5 record(s) kept for retry",
        "usage ledger writing again",
    ]


def test_a_retried_batch_the_database_did_commit_is_not_written_twice(tmp_path: Path, stopped: list[Ledger]) -> None:
    """The commit went through but its answer was lost: the retry must not duplicate rows."""
    engine = store.connect(f"sqlite:///{tmp_path / 'usage.db'}")
    store.migrate(engine)
    calls = []

    def write(records: Sequence[UsageRecord]) -> None:
        store.insert(engine, records)
        calls.append(len(records))
        if len(calls) == 1:
            raise ConnectionError("connection lost after the commit")

    ledger = started(stopped, Ledger(write, batch=10, interval=0.01, max_backoff=0.01))
    for n in range(4):
        ledger.record(record(n))
    wait_until(lambda: ledger.written == 4, SETTLE, "the batch written")
    assert calls == [4, 4] and ledger.failures == 1
    with engine.connect() as connection:
        ids = connection.execute(sa.select(store.usage_records.c.id).order_by("id")).scalars().all()
    assert ids == ["req-0", "req-1", "req-2", "req-3"]
    engine.dispose()


def test_a_full_buffer_drops_the_newest_records_and_counts_them(
    db: FakeDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "aimi.usage.ledger")
    ledger = Ledger(db.write, capacity=3, batch=10)  # not started: nothing leaves the buffer
    for n in range(6):
        ledger.record(record(n))
    assert (ledger.pending, ledger.dropped) == (3, 3)
    assert [r.getMessage() for r in caplog.records] == ["usage ledger buffer full: 1 record(s) dropped so far"]

    assert ledger.flush(deadline=1)
    assert db.written == ["req-0", "req-1", "req-2"]  # the oldest were kept
    ledger.record(record(6))  # room again
    assert ledger.flush(deadline=1)
    assert db.written == ["req-0", "req-1", "req-2", "req-6"]
    assert (ledger.written, ledger.dropped, ledger.pending) == (4, 3, 0)


def test_stop_with_the_database_down_counts_what_is_left_as_dropped(
    db: FakeDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "aimi.usage.ledger")
    db.down = True
    ledger = Ledger(db.write, batch=10, interval=0.01, max_backoff=0.01)
    ledger.start()
    for n in range(4):
        ledger.record(record(n))
    wait_until(lambda: ledger.failures >= 1, SETTLE, "a failed write")
    ledger.stop(deadline=0.2)
    assert (ledger.written, ledger.pending, ledger.dropped, ledger.healthy) == (0, 0, 4, False)
    assert db.written == []
    assert caplog.records[-1].getMessage() == (
        "usage ledger stopped with the database unreachable: 4 record(s) dropped"
    )


def test_stop_writes_what_is_buffered(db: FakeDatabase) -> None:
    ledger = Ledger(db.write, batch=100, interval=60)
    ledger.start()
    for n in range(3):
        ledger.record(record(n))
    ledger.stop()
    assert db.batches == [["req-0", "req-1", "req-2"]]
    assert (ledger.written, ledger.pending, ledger.dropped) == (3, 0, 0)


# --- the store on SQLite --------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = store.connect(f"sqlite:///{tmp_path / 'usage.db'}")
    yield engine
    engine.dispose()


def _schema(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT name, sql FROM sqlite_master ORDER BY name")).all()
    return [(name, sql) for name, sql in rows]


def test_migrating_twice_is_a_no_op(engine: Engine) -> None:
    store.migrate(engine)
    schema = _schema(engine)
    assert [name for name, _ in schema] == [
        "alembic_version",
        "audit_log",
        "ix_audit_log_time",
        "ix_usage_records_deployment",
        "ix_usage_records_key",
        "ix_usage_records_time",
        "managed_keys",
        "runtime_deployments",
        "sqlite_autoindex_alembic_version_1",
        "sqlite_autoindex_managed_keys_1",
        "sqlite_autoindex_runtime_deployments_1",
        "sqlite_autoindex_usage_records_1",
        "usage_records",
    ]
    store.insert(engine, [record(1)])
    store.migrate(engine)
    assert _schema(engine) == schema
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [("0002",)]
        assert connection.execute(sa.text("SELECT count(*) FROM usage_records")).scalar() == 1
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"


def test_inserting_the_same_record_twice_writes_one_row(engine: Engine) -> None:
    store.migrate(engine)
    store.insert(engine, [record(1)])
    store.insert(engine, [record(1)])
    # A batch holding a written record and a new one: the new one goes in, the old row stays.
    store.insert(engine, [record(1, prompt_tokens=999), record(2)])
    with engine.connect() as connection:
        rows = connection.execute(sa.select(store.usage_records).order_by("id")).mappings().all()
    assert [(r["id"], r["prompt_tokens"]) for r in rows] == [("req-1", 4), ("req-2", 4)]
    first = dict(rows[0])
    assert first == {
        "id": "req-1",
        "time": datetime(2025, 3, 1, 10, 0),  # SQLite gives UTC back without its zone
        "key": "key-1",
        "deployment": "chat",
        "model": "Fake-Model",
        "surface": "azure",
        "route": "chat",
        "status": 200,
        "outcome": "ok",
        "prompt_tokens": 4,
        "completion_tokens": 12,
        "latency_ms": 12.5,
        "ttft_ms": 3.25,
        "cost": None,
    }


# --- the report -----------------------------------------------------------------------------


def _at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, second, tzinfo=UTC)


REPORT_RECORDS = [
    record(1, key="a", deployment="x", time=_at(1, 10), prompt_tokens=10, completion_tokens=5, cost=0.1),
    record(2, key="a", deployment="y", time=_at(1, 23, 59, 59), prompt_tokens=3, completion_tokens=0, cost=None),
    record(3, key="b", deployment="x", time=_at(2, 0), prompt_tokens=7, completion_tokens=7, cost=0.2),
    record(4, key=None, deployment=None, model=None, time=_at(2, 12), prompt_tokens=0, completion_tokens=0,
           status=401, outcome="rejected", ttft_ms=None),
    record(5, key="b", deployment="x", time=_at(3, 0), prompt_tokens=1, completion_tokens=1, cost=0.4),
]  # fmt: skip


@pytest.fixture
def ledger_db(engine: Engine) -> Engine:
    store.migrate(engine)
    store.insert(engine, REPORT_RECORDS)
    return engine


def row(requests: int, prompt: int, completion: int, cost: float | None, **groups: object) -> dict[str, object]:
    return {
        **groups,
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": cost,
    }


def test_totals_by_key(ledger_db: Engine) -> None:
    assert report.totals(ledger_db, ("key",)) == [
        row(1, 0, 0, None, key=None),
        row(2, 13, 5, 0.1, key="a"),
        row(2, 8, 8, 0.6, key="b"),
    ]


def test_totals_by_deployment_round_their_cost(ledger_db: Engine) -> None:
    assert 0.1 + 0.2 + 0.4 != 0.7  # the float sum; the report rounds to six places
    assert report.totals(ledger_db, ("deployment",)) == [
        row(1, 0, 0, None, deployment=None),
        row(3, 18, 13, 0.7, deployment="x"),
        row(1, 3, 0, None, deployment="y"),
    ]


def test_totals_by_day_are_utc_days(ledger_db: Engine) -> None:
    assert report.totals(ledger_db, ("day",)) == [
        row(2, 13, 5, 0.1, day="2025-03-01"),
        row(2, 7, 7, 0.2, day="2025-03-02"),
        row(1, 1, 1, 0.4, day="2025-03-03"),
    ]


def test_totals_by_key_deployment_and_day_is_the_default(ledger_db: Engine) -> None:
    expected = [
        row(1, 0, 0, None, key=None, deployment=None, day="2025-03-02"),
        row(1, 10, 5, 0.1, key="a", deployment="x", day="2025-03-01"),
        row(1, 3, 0, None, key="a", deployment="y", day="2025-03-01"),
        row(1, 7, 7, 0.2, key="b", deployment="x", day="2025-03-02"),
        row(1, 1, 1, 0.4, key="b", deployment="x", day="2025-03-03"),
    ]
    assert report.totals(ledger_db) == expected
    assert report.totals(ledger_db, ("key", "deployment", "day")) == expected


def test_since_is_inclusive_and_until_exclusive(ledger_db: Engine) -> None:
    since, until = _at(1, 23, 59, 59), _at(3, 0)
    assert report.totals(ledger_db, ("key",), since, until) == [
        row(1, 0, 0, None, key=None),
        row(1, 3, 0, None, key="a"),
        row(1, 7, 7, 0.2, key="b"),
    ]
    assert report.totals(ledger_db, ("key",), since=_at(2, 12)) == [
        row(1, 0, 0, None, key=None),
        row(1, 1, 1, 0.4, key="b"),
    ]
    assert report.totals(ledger_db, ("key",), until=_at(1, 10)) == []
    assert report.totals(ledger_db, (), until=_at(1, 10, 0, 1)) == [row(1, 10, 5, 0.1)]
    assert report.totals(ledger_db, ()) == [row(5, 21, 13, 0.7)]


def test_bounds_with_an_offset_mean_the_same_instant(ledger_db: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    since = _at(1, 23, 59, 59).astimezone(plus_two)  # 2025-03-02T01:59:59+02:00
    assert report.totals(ledger_db, ("key",), since, _at(3, 0).astimezone(plus_two)) == report.totals(
        ledger_db, ("key",), _at(1, 23, 59, 59), _at(3, 0)
    )


def test_totals_refuse_an_unknown_group(ledger_db: Engine) -> None:
    with pytest.raises(ValueError, match="cannot group by region; choose from key, deployment, day, model, surface"):
        report.totals(ledger_db, ("key", "region"))


def test_render_csv(ledger_db: Engine) -> None:
    rows = report.totals(ledger_db, ("key",))
    assert report.render(rows, ("key",), "csv") == (
        "key,requests,prompt_tokens,completion_tokens,total_tokens,cost\n,1,0,0,0,\na,2,13,5,18,0.1\nb,2,8,8,16,0.6\n"
    )
    assert report.render([], ("key", "day"), "csv") == (
        "key,day,requests,prompt_tokens,completion_tokens,total_tokens,cost\n"
    )


def test_render_json(ledger_db: Engine) -> None:
    rows = report.totals(ledger_db, ("deployment", "day"), since=_at(2, 0))
    text = report.render(rows, ("deployment", "day"), "json")
    assert text == (
        "[\n"
        "  {\n"
        '    "deployment": null,\n'
        '    "day": "2025-03-02",\n'
        '    "requests": 1,\n'
        '    "prompt_tokens": 0,\n'
        '    "completion_tokens": 0,\n'
        '    "total_tokens": 0,\n'
        '    "cost": null\n'
        "  },\n"
        "  {\n"
        '    "deployment": "x",\n'
        '    "day": "2025-03-02",\n'
        '    "requests": 1,\n'
        '    "prompt_tokens": 7,\n'
        '    "completion_tokens": 7,\n'
        '    "total_tokens": 14,\n'
        '    "cost": 0.2\n'
        "  },\n"
        "  {\n"
        '    "deployment": "x",\n'
        '    "day": "2025-03-03",\n'
        '    "requests": 1,\n'
        '    "prompt_tokens": 1,\n'
        '    "completion_tokens": 1,\n'
        '    "total_tokens": 2,\n'
        '    "cost": 0.4\n'
        "  }\n"
        "]\n"
    )
    assert json.loads(text) == rows
    assert report.render([], ("key",), "json") == "[]\n"


# --- PostgreSQL: days in UTC as on SQLite ---------------------------------------------------


def test_postgres_days_are_utc_days_whatever_the_server_time_zone(postgres_url: str) -> None:
    # A server whose TimeZone is not UTC, as many are; the connection option stands in for it.
    engine = store.connect(postgres_url + "?options=-c%20TimeZone%3DAsia%2FTokyo")
    key = f"tz-{uuid.uuid4().hex}"
    late = datetime(2001, 2, 3, 20, 0, tzinfo=UTC)  # 05:00 the next day in Tokyo
    try:
        store.migrate(engine)
        store.insert(engine, [record(0, id=f"{key}-0", key=key, time=late)])
        rows = report.totals(engine, ("key", "day"), since=datetime(2001, 2, 3, tzinfo=UTC))
        assert [r["day"] for r in rows if r["key"] == key] == ["2001-02-03"]
    finally:
        with engine.begin() as connection:
            connection.execute(sa.delete(store.usage_records).where(store.usage_records.c.key == key))
        engine.dispose()


def test_a_failing_database_is_retried_after_a_pause_even_with_a_full_batch_waiting() -> None:
    database = FakeDatabase()
    database.down = True
    ledger = Ledger(database.write, batch=10, interval=0.05)
    ledger.start()
    try:
        for n in range(50):
            ledger.record(record(n))
        wait_until(lambda: database.calls >= 2, SETTLE, "two attempts")
        calls = database.calls
        # The pause doubles from 0.5 s: over the next 0.3 s (a window of time, not a wait for an
        # event) at most one more attempt.
        threading.Event().wait(0.3)
        assert database.calls - calls <= 1, database.calls - calls
        database.down = False
        wait_until(lambda: ledger.pending == 0, SETTLE, "the records written once it is back")
        assert sum(len(b) for b in database.batches) == 50
    finally:
        ledger.stop()


def test_a_record_handed_over_after_stop_is_counted_as_dropped() -> None:
    database = FakeDatabase()
    ledger = Ledger(database.write)
    ledger.start()
    ledger.stop()
    ledger.record(record(1))
    assert (ledger.dropped, ledger.pending) == (1, 0)


def test_flush_keeps_its_deadline_when_a_write_is_stuck() -> None:
    database = FakeDatabase()
    database.gate = threading.Event()
    ledger = Ledger(database.write, batch=1)
    ledger.start()
    try:
        ledger.record(record(1))
        assert database.entered.wait(SETTLE)
        ledger.record(record(2))
        started = time.monotonic()
        assert ledger.flush(0.3) is False
        assert time.monotonic() - started < 1.0
    finally:
        database.gate.set()
        ledger.stop()
