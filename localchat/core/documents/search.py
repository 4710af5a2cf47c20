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
from typing import TYPE_CHECKING, Any

import numpy as np

from localchat.core.documents.store import DocumentStore, Passage

if TYPE_CHECKING:
    from localchat.core.documents.embedding import Embedding

RRF_K = 60
DEPTH = 50
"""How many of each list's best are fused."""

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    # English function words and question words.
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further goes going had has have having he her here hers him his how i if in into
    is it its itself just me more most my no nor not now of off on once only or other our out
    over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours"""
    # Turkish: conjunctions, postpositions, question words.
    """ve ile de da ki bu şu o bir için gibi kadar ne neden nasıl nerede nereye hangi kaç
    kim mi mı mu mü mıdır midir hem ya veya ama fakat"""
    # Korean: question words and the commonest particles standing alone.
    """무엇 무엇인가요 언제 어디 어디서 어디에 누가 누구 왜 어떻게 몇 어느
    그리고 또는 및 이 그 저""".split()
)
"""Words too common to say what a question is about: the search does not
look for them (BM25 would weigh them little, but a question made mostly of
them would still match them), nor does the relevance of a passage count them."""


def words(text: str) -> list[str]:
    found = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return list(dict.fromkeys(found))


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def word_query(text: str) -> str | None:
    terms = words(text)
    return " OR ".join(_quoted(t) for t in terms) if terms else None


TRIGRAMS = 8
"""How many of a question's trigrams are searched: its rarest (the common
ones find everything and cost the most)."""


def trigrams(text: str) -> list[str]:
    """Every word's three-character runs (words of three or more), lower case."""
    grams: dict[str, None] = {}
    for w in words(unicodedata.normalize("NFC", text)):
        if len(w) >= 3:
            for i in range(len(w) - 2):
                grams[w[i : i + 3]] = None
    return list(grams)


def trigram_query(text: str, store: DocumentStore | None = None) -> str | None:
    """The question's trigrams as a query (matches a word inside a longer
    one); with ``store``, only the :data:`TRIGRAMS` rarest that occur."""
    grams = trigrams(text)
    if store is not None:
        counts = store.trigram_counts(grams)
        grams = sorted((g for g in grams if g in counts), key=lambda g: counts[g])[:TRIGRAMS]
    return " OR ".join(_quoted(g) for g in grams) if grams else None


def similar(
    store: DocumentStore, cids: Sequence[int], query: Any, limit: int
) -> list[tuple[int, float]]:
    """The passages whose vectors are closest to ``query`` (cosine), best first."""
    if not cids:
        return []
    ids, matrix = store.vectors(cids)
    if not len(ids):
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32)
    best = np.argsort(-scores, kind="stable")[:limit]
    return [(int(ids[i]), float(scores[i])) for i in best]


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each id's sum of 1/(k + rank) over the lists."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def search(
    store: DocumentStore,
    names: Sequence[str],
    question: str,
    *,
    top: int = 5,
    embedding: Embedding | None = None,
    similarities: dict[int, float] | None = None,
) -> list[Passage]:
    """The ``top`` passages of the collections ``names`` that best answer
    ``question``, best first, each with its fused score; with ``embedding``
    (the collections' embedding model, loaded), also by meaning: the
    passages whose vectors are closest to the question's (exact search).
    ``similarities``, if given, gets each of those passages' cosine."""
    cids = [store.collection(n).id for n in names]
    rankings = []
    if embedding is not None:
        embedded = [
            cid
            for cid, name in zip(cids, names, strict=True)
            if store.collection(name).embedder == embedding.name
        ]
        hits = similar(store, embedded, embedding.query(question), DEPTH)
        rankings.append([i for i, _ in hits])
        if similarities is not None:
            similarities.update(hits)
    query = word_query(question)
    if query:
        rankings.append(store.match("chunk_words", cids, query, DEPTH))
    query = trigram_query(question, store)
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
