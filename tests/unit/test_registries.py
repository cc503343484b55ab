"""Engines and content safety classifiers are found by name, and declare what they accept."""

import subprocess
import sys
import typing

import pytest

from aimi.engines import ENGINES, engine_options
from aimi.engines.options import EngineOptions
from aimi.safety.policy import ClassifierName
from aimi.safety.registry import CLASSIFIERS


def test_every_classifier_a_policy_may_name_is_registered() -> None:
    assert sorted(CLASSIFIERS) == sorted(typing.get_args(ClassifierName))


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_declares_its_options(name: str) -> None:
    options = engine_options(name)
    assert issubclass(options, EngineOptions) and options.model_config.get("extra") == "forbid"


def test_an_engines_options_load_no_engine_library() -> None:
    code = (
        "import sys\nfrom aimi.engines import ENGINES, engine_options\n"
        "for name in ENGINES: engine_options(name)\n"
        "print(sorted(m for m in ('xllamacpp', 'torch', 'vllm', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_what_a_file_is_checked_against_comes_from_the_engine() -> None:
    upstream = engine_options("upstream")
    assert not upstream.needs_model and upstream.required() == ["url"]
    assert engine_options("llamacpp").needs_model and engine_options("llamacpp").required() == []
