"""Finding the passages that answer a question: BM25 over words (accents
folded, so "Istanbul" finds "İstanbul") and over trigrams (a word inside a
longer one: Korean "서울" in "서울에서", Turkish "ev" endings), the two
rankings fused by reciprocal rank (RRF, k=60: each list's order counts, not
its scores, which are not comparable). Embeddings will join as a third
list.

The question is never passed to FTS5 as a query: its words are quoted and
OR'd, so any text a user types is a valid search."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from localchat.core.documents.store import DocumentStore, Passage

RRF_K = 60
DEPTH = 50
"""How many of each list's best are fused."""

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a an and are as at be but by do does did for from has have how i if in is it its
    of on or so that the their them they this to was were what when where which who why
    will with you your""".split()
)
"""English words too common to be worth matching on their own (BM25 weighs
them little, but a question made mostly of them would still match them)."""


def words(text: str) -> list[str]:
    found = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return list(dict.fromkeys(found))


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def word_query(text: str) -> str | None:
    terms = words(text)
    return " OR ".join(_quoted(t) for t in terms) if terms else None


def trigram_query(text: str) -> str | None:
    """Every word's three-character runs (words of three or more): matches
    where the word sits inside a longer one."""
    grams: dict[str, None] = {}
    for w in words(unicodedata.normalize("NFC", text)):
        if len(w) >= 3:
            for i in range(len(w) - 2):
                grams[w[i : i + 3]] = None
    return " OR ".join(_quoted(g) for g in grams) if grams else None


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each id's sum of 1/(k + rank) over the lists."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def search(
    store: DocumentStore, names: Sequence[str], question: str, *, top: int = 5
) -> list[Passage]:
    """The ``top`` passages of the collections ``names`` that best answer
    ``question``, best first, each with its fused score."""
    cids = [store.collection(n).id for n in names]
    rankings = []
    query = word_query(question)
    if query:
        rankings.append(store.match("chunk_words", cids, query, DEPTH))
    query = trigram_query(question)
    if query:
        rankings.append(store.match("chunk_trigrams", cids, query, DEPTH))
    best = fuse(rankings)[:top]
    found = store.passages([i for i, _ in best])
    out = []
    for chunk_id, score in best:
        p = found[chunk_id]
        out.append(
            Passage(p.chunk_id, p.path, p.title, p.text, p.headings, p.pages, p.lines, score)
        )
    return out
