"""The usage ledger end to end: one record per request, on SQLite and on PostgreSQL.

One server per database serves five deployments (a quick chat one, a slow one for aborts, a
failing one, an embeddings one and one with a tiny token quota) and takes a mix of requests:
answers, streams, aborts, engine failures, 429s, 400s, 422s, 403s and 404s. The ledger is read
back with SQLAlchemy from the same URL, through ``/admin/usage`` and through ``aimi usage``.

PostgreSQL is shared (other runs may write to it at the same time), so every name is unique to
the run and reads keep to this run's keys (refusals before routing carry no deployment) or, for
``--by deployment``, to this run's deployments.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from aimi.auth.keys import ApiKey
from aimi.deployments.build import from_settings
from aimi.deployments.profile import ModelProfile
from aimi.quota.api import QuotaLimits
from aimi.runtime import runtime_of
from aimi.settings import Settings
from aimi.usage.records import Prices
from aimi.usage.store import database_url, usage_records
from tests.api.helpers import CHAT, COMPLETION, abort, assert_error, open_request
from tests.conftest import FAKE_MODEL, KEY, InProcessServer, in_process, wait_until

# A quarter per prompt token, one per completion token: every cost and every sum of costs is
# exact in binary floating point, so totals compare with ==.
PRICES = Prices(prompt_per_1m=250_000.0, completion_per_1m=1_000_000.0)
INFERENCE_ONLY = "inference-only-key-0123456789ab"
CHAT_ONLY = "chat-only-key-0123456789abcdef01"
SLOW_TEXT = "word " * 100  # 10 s at 10 tokens per second: every abort below comes long before
TIGHT_TPM = 20
SETTLE = 5.0


@dataclass
class Sent:
    """One request as the client saw it, and what its usage record must say."""

    id: str | None  # None: the client left before any response (no x-request-id to read)
    key: str
    deployment: str | None
    route: str
    surface: str
    status: int
    outcome: str
    prompt: int
    completion: int
    generated: bool  # the engine produced at least one piece: ttft_ms is set
    read_to_the_end: bool = False  # a stream the client read to its last byte

    @property
    def cost(self) -> float | None:
        return None if self.deployment is None else PRICES.cost(self.prompt, self.completion)


@dataclass
class Traffic:
    server: InProcessServer
    url: str
    since: str
    names: dict[str, str]  # role -> deployment name
    keys: dict[str, str]  # role -> key name
    sent: list[Sent] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """This run's usage records, read straight from the database."""
        engine = sa.create_engine(database_url(self.url))
        try:
            query = sa.select(usage_records).where(usage_records.c.key.in_(list(self.keys.values())))
            with engine.connect() as connection:
                return [dict(row) for row in connection.execute(query).mappings()]
        finally:
            engine.dispose()


def _usage_of_stream(response: httpx.Response) -> dict[str, int]:
    """The usage a streaming client received: the last chunk that carries one."""
    payloads = [
        json.loads(line[len("data: ") :])
        for line in response.iter_lines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    usages = [p["usage"] for p in payloads if p.get("usage")]
    assert len(usages) == 1, payloads
    return dict(usages[0])


def _settled(server: InProcessServer, name: str) -> bool:
    deployment = _deployment(server, name)
    return bool(deployment.engine.active == 0 and deployment.in_flight == 0)


def _deployment(server: InProcessServer, name: str) -> Any:
    return next(d for d in runtime_of(server.app).deployments if d.name == name)


def _send_everything(traffic: Traffic) -> None:
    server, names, keys, sent = traffic.server, traffic.names, traffic.keys, traffic.sent
    chat, slow, fail, vec, tight = (names[r] for r in ("chat", "slow", "fail", "vec", "tight"))
    full = keys["full"]

    def answered(http: httpx.Client, path: str, body: dict[str, Any], route: str, model: str) -> None:
        response = http.post(path, json={**body, "model": model})
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        completion = usage.get("completion_tokens", 0)
        assert usage["total_tokens"] == usage["prompt_tokens"] + completion
        surface = "openai" if path.startswith("/v1/") else "azure"
        sent.append(
            Sent(
                response.headers["x-request-id"], full, model, route, surface, 200, "ok",
                usage["prompt_tokens"], completion, route != "embeddings",
            )
        )  # fmt: skip

    def streamed(http: httpx.Client, path: str, body: dict[str, Any], route: str) -> None:
        with http.stream("POST", path, json={**body, "model": chat, "stream": True}) as response:
            assert response.status_code == 200
            usage = _usage_of_stream(response)
        surface = "openai" if path.startswith("/v1/") else "azure"
        sent.append(
            Sent(
                response.headers["x-request-id"], full, chat, route, surface, 200, "ok",
                usage["prompt_tokens"], usage["completion_tokens"], True, read_to_the_end=True,
            )
        )  # fmt: skip

    def refused(
        http: httpx.Client, path: str, status: int, code: str, deployment: str | None, key: str, **kwargs: Any
    ) -> httpx.Response:
        response = http.post(path, **kwargs)
        assert_error(response, status, code)
        outcome = "rate_limited" if status == 429 else "rejected"
        route = "completions" if path.endswith("/completions") and "chat" not in path else "chat"
        surface = "openai" if path.startswith("/v1/") else "azure"
        sent.append(
            Sent(response.headers["x-request-id"], key, deployment, route, surface, status, outcome, 0, 0, False)
        )
        return response

    slow_engine = _deployment(server, slow).engine
    fail_engine = _deployment(server, fail).engine

    with server.client() as http:
        # Answers, whole and streamed, on both surfaces.
        answered(http, "/chat/completions", CHAT, "chat", chat)
        answered(http, "/v1/chat/completions", CHAT, "chat", chat)
        answered(http, "/completions", COMPLETION, "completions", chat)
        answered(http, "/v1/completions", {**COMPLETION, "max_tokens": 5}, "completions", chat)
        answered(http, "/embeddings", {"input": ["one two three", "four"]}, "embeddings", vec)
        answered(http, "/v1/embeddings", {"input": "five six"}, "embeddings", vec)
        streamed(http, "/chat/completions", CHAT, "chat")
        streamed(http, "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, "chat")
        streamed(http, "/v1/completions", {**COMPLETION, "stream_options": {"include_usage": True}}, "completions")

        # Streams the client leaves after the role chunk and three words.
        for path, surface in (("/chat/completions", "azure"), ("/v1/chat/completions", "openai")):
            before = slow_engine.tokens_generated
            with http.stream("POST", path, json={**CHAT, "model": slow, "stream": True}) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                events = 0
                while events < 4:
                    events += next(lines).startswith("data: ")
                request_id = response.headers["x-request-id"]
            wait_until(lambda: _settled(server, slow), SETTLE, "the aborted generation to stop")
            produced = slow_engine.tokens_generated - before
            assert produced >= 3
            sent.append(Sent(request_id, full, slow, "chat", surface, 200, "aborted", 4, produced, True))

        # A whole answer the client leaves (its socket closes): 499, no response to read.
        before = slow_engine.tokens_generated
        sock = open_request(server, "/chat/completions", {**CHAT, "model": slow})
        try:
            wait_until(lambda: slow_engine.tokens_generated >= before + 2, SETTLE, "two tokens")
        finally:
            abort(sock)
        wait_until(lambda: _settled(server, slow), SETTLE, "the abandoned generation to stop")
        produced = slow_engine.tokens_generated - before
        sent.append(Sent(None, full, slow, "chat", "azure", 499, "aborted", 4, produced, True))

        # The engine fails after three tokens: mid-stream (the 200 is out) and in a whole answer.
        before = fail_engine.tokens_generated
        with http.stream("POST", "/chat/completions", json={**CHAT, "model": fail, "stream": True}) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in response.iter_raw():
                    pass
        assert fail_engine.tokens_generated - before == 3
        sent.append(
            Sent(response.headers["x-request-id"], full, fail, "chat", "azure", 200, "engine_error", 4, 3, True)
        )
        response = http.post("/v1/chat/completions", json={**CHAT, "model": fail})
        assert_error(response, 500, "engine_error")
        assert fail_engine.tokens_generated - before == 6
        sent.append(
            Sent(response.headers["x-request-id"], full, fail, "chat", "openai", 500, "engine_error", 4, 3, True)
        )

        # The tight deployment: 9 tokens pass, the next 19 would pass its 20 per minute.
        answered(http, "/chat/completions", {**CHAT, "max_tokens": 5}, "chat", tight)
        assert sent[-1].prompt + sent[-1].completion == 9
        refused(http, "/chat/completions", 429, "TooManyRequests", tight, full, json={**CHAT, "model": tight,
                "max_tokens": 15})  # fmt: skip

        # Refused before any engine work: bad JSON (400), an unsupported control (422, after
        # routing), an unknown deployment (404).
        refused(http, "/chat/completions", 400, "invalid_json", None, full, content=b"{not json",
                headers={"content-type": "application/json"})  # fmt: skip
        refused(http, "/v1/completions", 422, "parameter_not_supported", chat, full,
                json={**COMPLETION, "model": chat, "logprobs": 2})  # fmt: skip
        refused(http, "/chat/completions", 404, "NotFound", None, full, json={**CHAT, "model": "no-such-deployment"})

    # A key limited to the chat deployment asks for another one: 403.
    with httpx.Client(base_url=server.url, headers={"api-key": CHAT_ONLY}, timeout=30) as limited:
        refused(
            limited, "/v1/chat/completions", 403, "Forbidden", None, keys["chat_only"], json={**CHAT, "model": slow}
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def traffic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'usage.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    tag = uuid.uuid4().hex[:12]
    settings = Settings(engine="fake", home=tmp_path_factory.mktemp("home"), deployment_name=f"dep-{tag}")
    [base] = from_settings(settings, FAKE_MODEL)
    base = replace(base, prices=PRICES)

    def options(**values: Any) -> Any:
        return replace(base.engine_config, options=values)

    specs = [
        base,
        replace(base, name=f"{base.name}-slow", engine_config=options(tokens_per_second=10, text=SLOW_TEXT)),
        replace(base, name=f"{base.name}-fail", engine_config=options(fail_after=3)),
        replace(base, name=f"{base.name}-vec", engine_config=options(kind="embeddings"),
                profile=ModelProfile(model_type="embeddings")),
        replace(base, name=f"{base.name}-tight", quota=QuotaLimits(tokens_per_minute=TIGHT_TPM)),
    ]  # fmt: skip
    names = dict(zip(("chat", "slow", "fail", "vec", "tight"), (s.name for s in specs), strict=True))
    keys = {"full": f"key-{tag}", "inference_only": f"inference-{tag}", "chat_only": f"chat-only-{tag}"}
    api_keys = [
        ApiKey.from_secret(KEY, keys["full"]),
        ApiKey.from_secret(INFERENCE_ONLY, keys["inference_only"], scopes=frozenset({"inference"})),
        ApiKey.from_secret(CHAT_ONLY, keys["chat_only"], frozenset({names["chat"]})),
    ]
    since = datetime.now(UTC).isoformat()
    with in_process({"database_url": url, "deployment_name": base.name}, specs=specs, keys=api_keys) as server:
        running = Traffic(server, url, since, names, keys)
        _send_everything(running)
        expected = len(running.sent)
        wait_until(lambda: len(running.rows()) >= expected, 10, f"{expected} usage records")
        yield running


def _by_id(traffic: Traffic) -> dict[str | None, dict[str, Any]]:
    rows = traffic.rows()
    known = {s.id for s in traffic.sent if s.id is not None}
    unknown = [r for r in rows if r["id"] not in known]
    assert len(unknown) == sum(s.id is None for s in traffic.sent) == 1, unknown
    found: dict[str | None, dict[str, Any]] = {r["id"]: r for r in rows if r["id"] in known}
    found[None] = unknown[0]
    return found


def test_each_request_leaves_exactly_one_record_under_its_request_id(traffic: Traffic) -> None:
    rows = traffic.rows()
    assert len(rows) == len(traffic.sent) == 20
    assert len({r["id"] for r in rows}) == len(rows)
    assert not [r for r in rows if any(KEY in str(v) for v in r.values())]  # names, never secrets
    ids = [s.id for s in traffic.sent if s.id is not None]
    assert len(set(ids)) == len(ids)
    assert {s.id for s in traffic.sent if s.id is not None} < {r["id"] for r in rows}


def test_each_record_says_who_where_how_it_ended_and_what_it_cost(traffic: Traffic) -> None:
    found = _by_id(traffic)
    columns = ("key", "deployment", "model", "surface", "route", "status", "outcome", "prompt_tokens",
               "completion_tokens", "cost")  # fmt: skip
    wrong = []
    for sent in traffic.sent:
        row = found[sent.id]
        expected = (
            sent.key, sent.deployment, None if sent.deployment is None else "Fake-Model", sent.surface, sent.route,
            sent.status, sent.outcome, sent.prompt, sent.completion, sent.cost,
        )  # fmt: skip
        differences = {c: (row[c], e) for c, e in zip(columns, expected, strict=True) if row[c] != e}
        if differences:
            wrong.append((sent, differences))
        assert row["latency_ms"] > 0, row
        if sent.generated:
            assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"], row
        else:
            assert row["ttft_ms"] is None, row
        time = row["time"] if row["time"].tzinfo else row["time"].replace(tzinfo=UTC)
        assert datetime.fromisoformat(traffic.since) <= time <= datetime.now(UTC)
    assert wrong == []


def test_a_stream_read_to_its_end_is_recorded_ok(traffic: Traffic) -> None:
    found = _by_id(traffic)
    whole = [s for s in traffic.sent if s.read_to_the_end]
    assert len(whole) == 3
    assert [found[s.id]["outcome"] for s in whole] == ["ok", "ok", "ok"]


def test_outcomes_and_statuses_cover_every_way_a_request_ends(traffic: Traffic) -> None:
    outcomes: dict[tuple[str, int], int] = {}
    for row in traffic.rows():
        outcomes[(row["outcome"], row["status"])] = outcomes.get((row["outcome"], row["status"]), 0) + 1
    assert outcomes == {
        ("ok", 200): 10,
        ("aborted", 200): 2,
        ("aborted", 499): 1,
        ("engine_error", 200): 1,
        ("engine_error", 500): 1,
        ("rate_limited", 429): 1,
        ("rejected", 400): 1,
        ("rejected", 422): 1,
        ("rejected", 404): 1,
        ("rejected", 403): 1,
    }


def test_token_totals_match_what_clients_received_and_what_the_engine_produced(traffic: Traffic) -> None:
    found = _by_id(traffic)

    def total(outcomes: set[str], column: str) -> int:
        return sum(found[s.id][column] for s in traffic.sent if s.outcome in outcomes)

    finished = [s for s in traffic.sent if s.outcome == "ok"]
    assert len(finished) == 10
    assert total({"ok"}, "prompt_tokens") == sum(s.prompt for s in finished)
    assert total({"ok"}, "completion_tokens") == sum(s.completion for s in finished)
    # The fake engine's answer is 12 words; prompts are a word and 3 template tokens per turn.
    assert sum(s.completion for s in finished) == 12 * 6 + 5 + 5  # six whole answers, two cut at 5

    slow = _deployment(traffic.server, traffic.names["slow"]).engine
    fail = _deployment(traffic.server, traffic.names["fail"]).engine
    assert total({"aborted"}, "completion_tokens") == slow.tokens_generated
    assert total({"engine_error"}, "completion_tokens") == fail.tokens_generated == 6
    assert total({"aborted", "engine_error"}, "prompt_tokens") == 4 * 5
    assert total({"rate_limited", "rejected"}, "prompt_tokens") == 0
    assert total({"rate_limited", "rejected"}, "completion_tokens") == 0


def _expected_totals(traffic: Traffic, by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Sent]] = {}
    for sent in traffic.sent:
        groups.setdefault(tuple(getattr(sent, g) for g in by), []).append(sent)
    result = {}
    for group, members in groups.items():
        costs = [s.cost for s in members if s.cost is not None]
        prompt, completion = sum(s.prompt for s in members), sum(s.completion for s in members)
        result[group] = {
            **dict(zip(by, group, strict=True)),
            "requests": len(members),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost": sum(costs) if costs else None,
        }
    return result


def _mine(traffic: Traffic, rows: list[dict[str, Any]], by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rows of this run's keys (or deployments), by group; no group twice."""
    if "key" in by:
        kept = [r for r in rows if r["key"] in traffic.keys.values()]
    else:
        kept = [r for r in rows if r["deployment"] in traffic.names.values() or traffic.url.startswith("sqlite")]
    grouped = {tuple(r[g] for g in by): r for r in kept}
    assert len(grouped) == len(kept), kept
    return grouped


def _expected_for(traffic: Traffic, by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    expected = _expected_totals(traffic, by)
    if "key" not in by and not traffic.url.startswith("sqlite"):
        # Refusals before routing have no deployment; on a shared database their group mixes runs.
        expected = {g: row for g, row in expected.items() if None not in g}
    return expected


def test_admin_usage_json_has_the_exact_totals(traffic: Traffic) -> None:
    with traffic.server.client() as http:
        response = http.get("/admin/usage", params={"by": "key,deployment", "since": traffic.since})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["by"] == ["key", "deployment"]
    by = ("key", "deployment")
    assert _mine(traffic, body["data"], by) == _expected_for(traffic, by)
    assert all(list(row) == ["key", "deployment", "requests", "prompt_tokens", "completion_tokens",
                             "total_tokens", "cost"] for row in body["data"])  # fmt: skip


def _csv_expected(row: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in row.items()}


def test_admin_usage_csv_has_the_exact_totals(traffic: Traffic) -> None:
    with traffic.server.client() as http:
        response = http.get("/admin/usage", params={"by": "key,deployment", "since": traffic.since, "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines()[0] == "key,deployment,requests,prompt_tokens,completion_tokens,total_tokens,cost"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    kept = {(r["key"], r["deployment"]): r for r in rows if r["key"] in traffic.keys.values()}
    by = ("key", "deployment")
    expected = {
        tuple("" if v is None else v for v in group): _csv_expected(row)
        for group, row in _expected_for(traffic, by).items()
    }
    assert kept == expected
    assert len(kept) == len([r for r in rows if r["key"] in traffic.keys.values()])


def test_admin_usage_needs_the_admin_scope(traffic: Traffic) -> None:
    with httpx.Client(base_url=traffic.server.url, headers={"api-key": INFERENCE_ONLY}, timeout=30) as http:
        response = http.get("/admin/usage")
    body = assert_error(response, 403, "Forbidden")
    assert body["error"]["message"] == f"key '{traffic.keys['inference_only']}' lacks the 'admin' scope"
    with httpx.Client(base_url=traffic.server.url, timeout=30) as anonymous:
        assert_error(anonymous.get("/admin/usage"), 401, "Unauthorized")


def _aimi_usage(traffic: Traffic, fmt: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "aimi", "usage", "--database", traffic.url, "--format", fmt, "--by", "deployment",
         "--since", traffic.since],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def _ordered(expected: dict[tuple[Any, ...], dict[str, Any]]) -> list[dict[str, Any]]:
    # SQLite sorts NULL first.
    return [expected[g] for g in sorted(expected, key=lambda g: (g[0] is not None, g[0] or ""))]


def test_aimi_usage_json_prints_the_same_totals_with_their_cost(traffic: Traffic) -> None:
    rows = json.loads(_aimi_usage(traffic, "json"))
    by = ("deployment",)
    expected = _expected_for(traffic, by)
    assert _mine(traffic, rows, by) == expected
    if traffic.url.startswith("sqlite"):
        assert rows == _ordered(expected)
    chat = expected[(traffic.names["chat"],)]
    assert chat["cost"] == chat["prompt_tokens"] * 0.25 + chat["completion_tokens"] * 1.0 > 0


def test_aimi_usage_csv_prints_the_same_totals_with_their_cost(traffic: Traffic) -> None:
    out = _aimi_usage(traffic, "csv")
    lines = out.splitlines()
    assert lines[0] == "deployment,requests,prompt_tokens,completion_tokens,total_tokens,cost"
    by = ("deployment",)
    expected = _expected_for(traffic, by)
    wanted = [",".join(_csv_expected(row).values()) for row in _ordered(expected)]
    if traffic.url.startswith("sqlite"):
        assert lines[1:] == wanted
        assert out == "\n".join(lines) + "\n"
    else:
        assert sorted(line for line in lines[1:] if line.split(",")[0] in traffic.names.values()) == sorted(wanted)


def test_the_ledger_is_the_database_url_not_the_default_file(traffic: Traffic) -> None:
    assert not (Path(runtime_of(traffic.server.app).settings.home) / "usage.db").exists()
    if traffic.url.startswith("sqlite"):
        assert Path(traffic.url.removeprefix("sqlite:///")).is_file()


def test_stopping_the_server_closes_the_ledgers_connections(tmp_path: Path) -> None:
    with in_process({"database_url": f"sqlite:///{tmp_path / 'usage.db'}"}) as server:
        with server.client() as http:
            assert http.post("/chat/completions", json=CHAT).status_code == 200
        engine = runtime_of(server.app).store.engine
        wait_until(lambda: runtime_of(server.app).ledger.written == 1, SETTLE, "the record written")
    try:
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedin() == 0
    finally:
        engine.dispose()
