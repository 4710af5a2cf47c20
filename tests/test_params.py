"""The one declaration of generation settings and what is derived from it."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from localchat.core import params
from localchat.core.errors import SettingError
from localchat.core.params import GenerationSettings


def test_every_setting_has_label_help_and_a_valid_default() -> None:
    s = GenerationSettings()
    for name, spec in params.specs():
        assert spec.label and spec.help, name
        value = getattr(s, name)
        if spec.minimum is not None:
            assert value >= spec.minimum
        if spec.maximum is not None:
            assert value <= spec.maximum


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": 2.5}, "temperature must be at most 2"),
        ({"temperature": -0.1}, "temperature must be at least 0"),
        ({"top_k": 1.5}, "top_k must be a whole number"),
        ({"top_p": "high"}, "top_p must be a number"),
        ({"min_p": math.nan}, "min_p must be a finite number"),
        ({"seed": True}, "seed must be a whole number"),
        ({"ctx": 100}, "ctx must be at least 256"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"system_prompt": 3}, "system_prompt must be text"),
    ],
)
def test_bad_values_are_refused_with_one_line(changes: dict, message: str) -> None:
    with pytest.raises(SettingError) as err:
        GenerationSettings().replace(**changes)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_ints_are_accepted_for_floats() -> None:
    assert GenerationSettings(temperature=1).temperature == 1.0
    assert isinstance(GenerationSettings(temperature=1).temperature, float)


def test_storage_round_trip_and_unknown_keys() -> None:
    s = GenerationSettings(temperature=0.2, top_k=7, system_prompt="Be brief.")
    assert GenerationSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingError, match="unknown setting 'bogus'"):
        GenerationSettings.from_dict({"bogus": 1})
    # Settings written by a newer version still load.
    assert GenerationSettings.from_dict({"bogus": 1, "top_k": 3}, strict=False).top_k == 3


def test_cli_flags_are_derived_from_the_declaration() -> None:
    parser = argparse.ArgumentParser()
    params.add_cli_arguments(parser)
    flags = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for name, _ in params.specs():
        assert params.cli_flag(name) in flags
    assert "--system" in flags and "--ctx" in flags and "--top-k" in flags
    args = parser.parse_args(["--temperature", "0.3", "--top-k", "5", "--system", "Hi"])
    s = params.from_cli(args)
    assert (s.temperature, s.top_k, s.system_prompt) == (0.3, 5, "Hi")
    # Flags not given keep the base values.
    base = GenerationSettings(top_p=0.5)
    assert params.from_cli(parser.parse_args([]), base) == base


def test_llama_arguments_are_derived_and_explicit() -> None:
    s = GenerationSettings(temperature=0.0, top_k=3, top_p=0.9, min_p=0.1, repeat_penalty=1.3)
    sampling = s.llama_args("sampling")
    assert sampling == {
        "temp": 0.0,
        "top_k": 3,
        "top_p": 0.9,
        "min_p": 0.1,
        "repeat_penalty": 1.3,
        "seed": -1,
    }
    model = s.llama_args("model")
    assert model == {"n_ctx": 4096, "n_gpu_layers": -1, "n_threads": 0}


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GenerationSettings().temperature = 1.0  # type: ignore[misc]


def test_choices_have_words_for_the_form_and_keep_their_values() -> None:
    """The form words each overflow choice; the stored values and the CLI's stay."""
    spec = params.spec("overflow")
    assert spec.choices == ("rolling", "keep-start", "stop")
    assert set(spec.choice_labels) == set(spec.choices)
    assert params.choice_label("overflow", "rolling") == "Forget the oldest messages"
    assert params.choice_label("overflow", "stop") == "Stop and say so"
    for name, s in params.specs():  # words only for declared choices
        assert set(s.choice_labels) <= set(s.choices), name
    assert params.choice_label("overflow", "unknown") == "unknown"
    parser = argparse.ArgumentParser()
    params.add_cli_arguments(parser)
    args = parser.parse_args(["--overflow", "keep-start"])
    assert params.from_cli(args).overflow == "keep-start"
