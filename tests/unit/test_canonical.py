from aimi.engines.api import ChatTurn
from aimi.pipeline.canonical import fold_system


def test_system_turns_fold_into_the_first_user_turn() -> None:
    turns = [
        ChatTurn("system", "Be brief."),
        ChatTurn("user", "Hi"),
        ChatTurn("assistant", "Hello"),
        ChatTurn("user", "Bye"),
    ]
    assert fold_system(turns) == [
        ChatTurn("user", "Be brief.\n\nHi"),
        ChatTurn("assistant", "Hello"),
        ChatTurn("user", "Bye"),
    ]


def test_several_system_turns_fold_in_order() -> None:
    turns = [ChatTurn("system", "A"), ChatTurn("system", "B"), ChatTurn("user", "Q")]
    assert fold_system(turns) == [ChatTurn("user", "A\n\nB\n\nQ")]


def test_system_only_conversation_becomes_a_user_turn() -> None:
    assert fold_system([ChatTurn("system", "S")]) == [ChatTurn("user", "S")]


def test_conversation_without_system_is_unchanged() -> None:
    turns = [ChatTurn("user", "Q")]
    assert fold_system(turns) == turns
