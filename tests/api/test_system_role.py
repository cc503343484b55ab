"""Models whose template has no system role get system messages folded into the first user turn."""

from dataclasses import replace

from aimi.deployments.profile import ModelProfile
from aimi.engines.api import ChatTurn
from tests.conftest import FAKE_MODEL, in_process

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Answer in French."},
    {"role": "user", "content": "Hi"},
]


def test_system_and_developer_messages_fold_into_the_first_user_turn() -> None:
    model = replace(FAKE_MODEL, profile=ModelProfile(system_role=False))
    with in_process(model=model) as server, server.client() as client:
        assert client.post("/chat/completions", json={"messages": MESSAGES}).status_code == 200
        assert server.engine.requests[-1].messages == [ChatTurn("user", "Be brief.\n\nAnswer in French.\n\nHi")]


def test_models_with_a_system_role_keep_it_and_developer_becomes_system() -> None:
    with in_process() as server, server.client() as client:
        assert client.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 200
        assert server.engine.requests[-1].messages == [
            ChatTurn("system", "Be brief."),
            ChatTurn("system", "Answer in French."),
            ChatTurn("user", "Hi"),
        ]


def test_a_profile_can_refuse_tools_and_json_whatever_the_engine_can_do() -> None:
    model = replace(FAKE_MODEL, profile=ModelProfile(tools=False, json_output=False))
    tools = [{"type": "function", "function": {"name": "f"}}]
    with in_process({"engine_options": {"structured_output": True}}, model=model) as server, server.client() as client:
        for extra, loc, msg in (
            ({"tools": tools}, ["body", "tools"], "deployment 'fake-model' does not take tools"),
            (
                {"response_format": {"type": "json_object"}},
                ["body", "response_format"],
                "deployment 'fake-model' does not take response_format 'json_object'",
            ),
        ):
            response = client.post("/v1/chat/completions", json={"messages": MESSAGES, **extra})
            assert response.status_code == 422
            assert [(d["loc"], d["msg"]) for d in response.json()["detail"]] == [(loc, msg)]
