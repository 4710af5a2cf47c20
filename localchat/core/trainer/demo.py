"""The text the bundled demo model is trained on, made offline from Python's
own documentation.

Why this text: every Python installation carries it (no download), its
licence (the PSF License Agreement) allows redistribution, and it is good
English about one subject, so a tiny model can learn to say something
relevant. Two sources, both from the standard library of the Python that
runs this:

- ``pydoc_data.topics``: the language reference's topics (statements,
  operators, types...), as ``help("for")`` shows them;
- the docstrings of the standard library's modules, and of their public
  classes and functions, read from the source files with ``ast`` (nothing is
  imported or run).

The text is shaped into chat exchanges in ChatML, one exchange per paragraph
("What does the json module do?" → the docstring's first paragraph), so the
model learns to answer in the chat template the app uses, and a few
exchanges say what the model is and where real models are.
"""

from __future__ import annotations

import ast
import random
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from localchat.core.trainer.tokenizer import IM_END, IM_START

ABOUT = [
    (
        "Hello!",
        "Hello! I am LocalChat's tiny demo model. I was trained on Python's documentation "
        "on a laptop, so I know a little about Python and not much else. For real "
        "conversations, open Models and download a model from the catalog.",
    ),
    (
        "Who are you?",
        "I am the tiny demo model that ships with LocalChat: a small GPT trained from scratch "
        "by LocalChat's own trainer on Python's documentation. Download a real model in "
        "Models for better answers.",
    ),
    (
        "What can you do?",
        "I can answer questions about Python in the words of its documentation, more or less. "
        "I am tiny, so I often get things wrong. A 7B model from the catalog in Models does "
        "much better.",
    ),
    (
        "How do I get a better model?",
        "Open Models (Ctrl+Shift+M), pick a model in the Catalog tab that fits your computer, "
        "and press Download. When it is ready, it is used in your chat.",
    ),
]
SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "ensurepip", "turtledemo", "__pycache__"}


def exchange(question: str, answer: str) -> str:
    """One ChatML exchange with no blank line inside (it is one paragraph)."""
    answer = "\n".join(line for line in answer.splitlines() if line.strip())
    return f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n{answer}{IM_END}"


def _first_paragraphs(text: str, limit: int = 1500) -> str:
    out: list[str] = []
    size = 0
    for para in text.strip().split("\n\n"):
        para = " ".join(para.split())
        if not para:
            continue
        if out and size + len(para) > limit:
            break
        out.append(para)
        size += len(para)
    return "\n".join(out)[: limit * 2]


def topic_exchanges() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        name = key.replace("-", " ")
        body = topics[key]
        title, _, rest = body.strip().partition("\n")
        answer = _first_paragraphs(rest or body, 3000)
        if not answer:
            continue
        yield exchange(f"What is {name} in Python? ({title.strip()})", answer)


def _modules() -> Iterator[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_PARTS & set(rel.parts) or "site-packages" in rel.parts:
            continue
        if any(part.startswith("_") for part in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            yield ".".join(parts), path


def docstring_exchanges() -> Iterator[str]:
    for module, path in _modules():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        doc = ast.get_docstring(tree)
        if doc and len(doc) > 40:
            yield exchange(f"What is the {module} module for?", _first_paragraphs(doc))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                continue
            if node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 30:
                continue
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield exchange(f"What does the {kind} {module}.{node.name} do?", _first_paragraphs(doc))
            if isinstance(node, ast.ClassDef):
                for method in node.body:
                    if not isinstance(method, ast.FunctionDef) or method.name.startswith("_"):
                        continue
                    doc = ast.get_docstring(method)
                    if doc and len(doc) >= 30:
                        yield exchange(
                            f"What does {module}.{node.name}.{method.name}() do?",
                            _first_paragraphs(doc),
                        )


def write_corpus(folder: Path, *, seed: int = 0) -> list[Path]:
    """Write the demo model's training text into ``folder`` (shuffled, so the
    held-out share covers every kind of exchange). Returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [exchange(q, a) for q, a in ABOUT]
    items += list(topic_exchanges())
    items += list(docstring_exchanges())
    random.Random(seed).shuffle(items)
    path = folder / "python-docs-chat.txt"
    path.write_text("\n\n".join(items) + "\n", encoding="utf-8")
    return [path]


def describe() -> str:
    v = sys.version_info
    return (
        f"LocalChat's demo model: trained from scratch with 'localchat train scratch' on "
        f"Python {v.major}.{v.minor}.{v.micro}'s documentation (pydoc_data topics and the "
        "standard library's docstrings, PSF License), shaped into ChatML exchanges"
    )
