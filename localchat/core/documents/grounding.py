"""A user's turn grounded in their documents: the passages that answer it,
within a token budget, and the message the model is sent with them.

The passages go into the user's message itself (every chat template has a
user turn; not all have a system one), numbered, each with where it is,
then the question; the model is asked to cite them and to say when they do
not cover the question. When no passage is relevant (a passage must share
enough of the question's words, whole or as trigrams: BM25 ranks anything
that shares one word), the model is told that instead, and the caller
shows "not found in your documents". A small file among the best passages
that fits the budget whole is given whole."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localchat.core.documents import search
from localchat.core.documents.chunking import estimate_tokens
from localchat.core.documents.store import DocumentStore, Passage

if TYPE_CHECKING:
    from localchat.core.documents.embedding import Embedding

BUDGET = 1500
"""Tokens of passages a turn may add (the context's third at most)."""
CANDIDATES = 8
"""Passages searched for, before the budget and the relevance cut."""
RELEVANT = 0.3
"""The share of the question a passage must hold (:class:`Relevance`)."""

INSTRUCTIONS = (
    "Answer the question using the numbered passages from the user's documents below, "
    "and cite the passages you use by their number, like [1]. If they do not contain "
    "the answer, say that the documents do not cover it."
)
NOTHING = (
    "(No passage of the user's documents matches this question: say that the "
    "documents do not cover it, then answer only if you are sure.)"
)


@dataclass(frozen=True)
class Grounding:
    """What a turn was given: the passages (none: nothing relevant found)
    and the message sent in place of the user's words."""

    passages: tuple[Passage, ...]
    message: str


def stem(term: str) -> str:
    """The part of a word its inflections share, roughly: the word less its
    last letters (Korean particles, Turkish and Romanian endings, English
    plurals), never shorter than two Hangul syllables or four letters."""
    folded = _folded(term)
    if any("\uac00" <= c <= "\ud7af" for c in folded):
        return folded[: max(2, len(folded) - 1)]
    return folded[: max(4, len(folded) - 2)]


class Relevance:
    """How much of a question a passage holds: the share of the question's
    words it contains (as their stems), each weighted by how rare the word
    is in the collections (a word they never use weighs most: a question
    about Peru is not answered by a passage that shares only "capital")."""

    def __init__(self, store: DocumentStore, question: str) -> None:
        self.stems = list(dict.fromkeys(stem(t) for t in search.words(question)))
        n = store.passage_count()
        # BM25's inverse document frequency (never negative); a stem's count
        # sums its words' counts, so it is capped at the passages there are.
        self.weights = [
            math.log(1 + (n - df + 0.5) / (df + 0.5))
            for df in (min(store.document_frequency(s), n) for s in self.stems)
        ]

    def __call__(self, text: str) -> float:
        total = sum(self.weights)
        if total <= 0:
            return 0.0
        haystack = _folded(text)
        return (
            sum(w for s, w in zip(self.stems, self.weights, strict=True) if s in haystack) / total
        )


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def retrieve(
    store: DocumentStore,
    collections: Sequence[str],
    question: str,
    *,
    budget: int = BUDGET,
    embedding: Embedding | None = None,
) -> tuple[Passage, ...]:
    """The relevant passages for ``question``, best first, within ``budget``
    estimated tokens; with ``embedding``, a passage close enough in meaning
    (``Embedding.relevant``) is relevant too, whatever its words."""
    relevance = Relevance(store, question)
    cosines: dict[int, float] = {}
    hits = search.search(
        store, collections, question, top=CANDIDATES, embedding=embedding, similarities=cosines
    )
    bar = embedding.relevant if embedding is not None else 2.0
    found = [
        p
        for p in hits
        if relevance(p.text + " " + " ".join(p.headings)) >= RELEVANT
        or cosines.get(p.chunk_id, -1.0) >= bar
    ]
    chosen: list[Passage] = []
    used = 0
    given_whole: set[str] = set()
    for p in found:
        if p.path in given_whole:
            continue
        whole = store.file_passages(p.path, collections)
        size = sum(estimate_tokens(w.text) for w in whole)
        if len(whole) > 1 and size <= budget // 3 and used + size <= budget:
            # A small file, given whole, in order.
            chosen.extend(whole)
            used += size
            given_whole.add(p.path)
            continue
        size = estimate_tokens(p.text)
        if used + size > budget:
            continue
        chosen.append(p)
        used += size
    return tuple(chosen)


def grounded_message(question: str, passages: Sequence[Passage]) -> str:
    """The user's message with the passages (or the note that none matched)."""
    if not passages:
        return f"{question}\n\n{NOTHING}"
    parts = [INSTRUCTIONS, ""]
    for i, p in enumerate(passages, 1):
        where = ", ".join(x for x in (_name(p.path), p.location, " › ".join(p.headings)) if x)
        parts.append(f"[{i}] {where}\n{p.text.strip()}\n")
    parts.append(f"Question: {question}")
    return "\n".join(parts)


def ground(
    store: DocumentStore,
    collections: Sequence[str],
    question: str,
    *,
    budget: int = BUDGET,
    embedding: Embedding | None = None,
) -> Grounding:
    passages = retrieve(store, collections, question, budget=budget, embedding=embedding)
    return Grounding(passages, grounded_message(question, passages))


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]
