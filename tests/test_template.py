"""Chat templates: the models' own, rendered in a sandbox, with sensible fallbacks."""

from __future__ import annotations

import pytest

from localchat.core.engine.template import FALLBACK_TEMPLATE, ChatTemplate
from localchat.core.errors import EngineError, ModelLoadError
from localchat.testing.tiny_models import fixture_template

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Name a colour."},
]


@pytest.mark.parametrize(
    ("stem", "bos", "eos", "expected"),
    [
        (
            "meta-llama-Llama-3.1-8B-Instruct",
            "<|begin_of_text|>",
            "<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>", "<|im_start|>assistant\n"),
        ("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", "<|assistant|>\n"),
        ("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>", "Name a colour.[/INST]"),
        ("google-gemma-2-2b-it", "<bos>", "<eos>", "<start_of_turn>model\n"),
    ],
)
def test_real_templates_render(stem: str, bos: str, eos: str, expected: str) -> None:
    t = ChatTemplate(fixture_template(stem), bos_token=bos, eos_token=eos)
    text = t.render(CONVERSATION)
    assert text.endswith(expected)
    assert "You are terse." in text  # even Gemma, which refuses a system role
    assert text.index("Hi") < text.index("Hello.") < text.index("Name a colour.")


def test_system_prompt_is_folded_into_the_first_user_turn_when_refused() -> None:
    t = ChatTemplate(fixture_template("google-gemma-2-2b-it"), bos_token="<bos>")
    text = t.render(CONVERSATION)
    assert "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>" in text


def test_no_template_falls_back_to_chatml() -> None:
    t = ChatTemplate(None)
    assert not t.from_model and t.source == FALLBACK_TEMPLATE
    assert t.render([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "evil",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append({'role': 'user'}) %}{{ x }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_a_template_cannot_escape_the_sandbox(evil: str) -> None:
    t = ChatTemplate(evil)
    with pytest.raises((ModelLoadError, EngineError)) as err:
        t.render([{"role": "user", "content": "Hi"}])
    assert "\n" not in str(err.value)


def test_invalid_template_and_template_errors_are_one_line() -> None:
    with pytest.raises(ModelLoadError, match="chat template is invalid"):
        ChatTemplate("{% for %}")
    t = ChatTemplate("{{ raise_exception('Conversation roles must alternate') }}")
    with pytest.raises(EngineError, match="roles must alternate"):
        t.render([{"role": "user", "content": "Hi"}])
