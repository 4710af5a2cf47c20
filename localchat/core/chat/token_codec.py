"""A reply's tokens (the token X-ray's data) as a compact blob, and back.

The format, version 1: ``MAGIC`` (4 bytes), the version (1 byte), then a
zlib-compressed payload of columns, all little-endian::

    n, m, c, k          uint32 x 4: tokens, table entries, candidates, overflow values
    ids                 int32[n]     each token's id
    flags               uint8[n]     bit 0: reasoning, bit 1: forced
    counts              uint8[n]     each token's number of candidates
    logprobs            uint16[n]    quantized (below)
    lse                 float32[n]   each position's log-normaliser
    text lengths        uint32[n]    each token's text, in code points
    texts               bytes        the tokens' texts joined, UTF-8
    table ids           int32[m]     the candidates' (id, text) pairs, each once
    table text lengths  uint32[m]
    table texts         bytes        UTF-8
    candidates          uint16[c] or uint32[c] (m > 65536): table indexes,
                        each token's in turn, most probable first
    candidate logprobs  uint16[c]    quantized
    overflow            float32[k]   the logprobs quantizing cannot hold, in order
                        (the tokens' first, then the candidates')

Version 2 adds, at the end, the distribution each token was drawn from
(``TokenLogprob.sampled``)::

    s                   uint32       entries in all
    sampled counts      uint8[n]     each token's
    sampled ids         int32[s]
    sampled p           uint16[s]    round(p * 65535)

Version 1 blobs are read as they are (no sampled distributions).

A logprob is quantized as ``round(-logprob * 1000)``: to 1/1000 nat (error at
most 0.0005) from 0 down to -65.534. One outside that range (or not finite)
is stored as :data:`ESCAPE` with its value, as float32, in the overflow
column. The texts are kept exactly: joined, the tokens' texts are byte for
byte what they were (a token that wrote nothing, a byte of a split
character, has ""). Candidate texts cannot be derived again without the
model, so they are kept too, each (id, text) pair once per reply.

Measured: ~150-190 bytes a token with 20 candidates from toy models (flat,
near-random distributions: the worst case), ~80 with 10 candidates; as JSON
the same take ~1.1 kB and ~550 bytes. Decoding 25,000 tokens of 10
candidates takes ~0.2 s, so the store decodes a reply's only when asked.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence

from localchat.core.engine.protocol import TokenLogprob
from localchat.core.errors import LocalChatError

MAGIC = b"LCTK"
VERSION = 2
READS = (1, 2)
"""The versions this one decodes."""
ESCAPE = 0xFFFF
"""A quantized logprob that stands for the next value of the overflow column."""
STEP = 1000
"""Quantization steps per nat."""
REASONING, FORCED = 1, 2

_HEAD = struct.Struct("<IIII")
_HEAD_U32 = struct.Struct("<I")
_TEXT = "utf-8"
_ERRORS = "surrogatepass"  # any Python string round-trips


class TokenCodecError(LocalChatError):
    """A token blob this LocalChat cannot read (damaged, or from a newer one)."""


def _code(size: int, signed: bool) -> str:
    """The array type code for an integer of ``size`` bytes."""
    for code in "bhilq" if signed else "BHILQ":
        if array(code).itemsize == size:
            return code
    raise AssertionError(f"no {size}-byte integer array type")


_I32, _U32, _U16, _U8 = _code(4, True), _code(4, False), _code(2, False), "B"
_F32 = "f"


def _pack(code: str, values: Sequence[int] | Sequence[float]) -> bytes:
    a = array(code, values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise TokenCodecError("the token data is damaged (it ends early)")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def array(self, code: str, count: int) -> array:
        a = array(code)
        a.frombytes(self.take(count * a.itemsize))
        if sys.byteorder == "big":
            a.byteswap()
        return a

    def text(self, lengths: Sequence[int]) -> list[str]:
        size = _HEAD_U32.unpack(self.take(4))[0]
        try:
            joined = self.take(size).decode(_TEXT, _ERRORS)
        except UnicodeDecodeError:
            raise TokenCodecError("the token data is damaged (its text)") from None
        out, at = [], 0
        for n in lengths:
            out.append(joined[at : at + n])
            at += n
        if at != len(joined):
            raise TokenCodecError("the token data is damaged (its text lengths)")
        return out


def _quantize(logprob: float, overflow: list[float]) -> int:
    q = round(-logprob * STEP) if math.isfinite(logprob) else -1
    if 0 <= q < ESCAPE:
        return q
    overflow.append(logprob)
    return ESCAPE


def _texts(texts: Sequence[str]) -> bytes:
    data = "".join(texts).encode(_TEXT, _ERRORS)
    return _HEAD_U32.pack(len(data)) + data


def encode(tokens: Sequence[TokenLogprob]) -> bytes:
    """The tokens as a compact blob (see the module's docstring)."""
    overflow: list[float] = []
    table: dict[tuple[int, str], int] = {}
    candidates: list[int] = []
    candidate_q: list[int] = []
    counts: list[int] = []
    for t in tokens:
        if len(t.top) > 255 or len(t.sampled) > 255:
            raise ValueError("at most 255 candidates (and kept tokens) a token")
        counts.append(len(t.top))
    token_q = [_quantize(t.logprob, overflow) for t in tokens]
    for t in tokens:
        for cid, text, logprob in t.top:
            candidates.append(table.setdefault((cid, text), len(table)))
            candidate_q.append(_quantize(logprob, overflow))
    flags = [(REASONING if t.reasoning else 0) | (FORCED if t.forced else 0) for t in tokens]
    wide = len(table) > 0x10000
    payload = b"".join(
        (
            _HEAD.pack(len(tokens), len(table), len(candidates), len(overflow)),
            _pack(_I32, [t.id for t in tokens]),
            _pack(_U8, flags),
            _pack(_U8, counts),
            _pack(_U16, token_q),
            _pack(_F32, [t.lse for t in tokens]),
            _pack(_U32, [len(t.text) for t in tokens]),
            _texts([t.text for t in tokens]),
            _pack(_I32, [cid for cid, _ in table]),
            _pack(_U32, [len(text) for _, text in table]),
            _texts([text for _, text in table]),
            _pack(_U32 if wide else _U16, candidates),
            _pack(_U16, candidate_q),
            _pack(_F32, overflow),
            _HEAD_U32.pack(sum(len(t.sampled) for t in tokens)),
            _pack(_U8, [len(t.sampled) for t in tokens]),
            _pack(_I32, [i for t in tokens for i, _ in t.sampled]),
            _pack(_U16, [min(round(p * 65535), 65535) for t in tokens for _, p in t.sampled]),
        )
    )
    return MAGIC + bytes((VERSION,)) + zlib.compress(payload, 6)


def decode(blob: bytes) -> tuple[TokenLogprob, ...]:
    """The tokens a blob holds: each as encoded, its logprobs to the
    quantization's precision, its lse to float32's."""
    if blob[:4] != MAGIC or len(blob) < 5:
        raise TokenCodecError("not token data")
    version = blob[4]
    if version not in READS:
        raise TokenCodecError(
            f"the token data is in format {blob[4]}, this LocalChat reads {VERSION}: "
            "upgrade LocalChat to see it"
        )
    try:
        payload = zlib.decompress(blob[5:])
    except zlib.error:
        raise TokenCodecError("the token data is damaged (it does not decompress)") from None
    r = _Reader(payload)
    n, m, c, k = _HEAD.unpack(r.take(_HEAD.size))
    ids = r.array(_I32, n)
    flags = r.array(_U8, n)
    counts = r.array(_U8, n)
    token_q = r.array(_U16, n)
    lse = r.array(_F32, n)
    texts = r.text(r.array(_U32, n))
    table_ids = r.array(_I32, m)
    table_texts = r.text(r.array(_U32, m))
    candidates = r.array(_U32 if m > 0x10000 else _U16, c)
    candidate_q = r.array(_U16, c)
    overflow = iter(r.array(_F32, k))
    sampled_counts: Sequence[int] = [0] * n
    sampled_ids: Sequence[int] = ()
    sampled_p: Sequence[int] = ()
    if version >= 2:
        (s,) = _HEAD_U32.unpack(r.take(_HEAD_U32.size))
        sampled_counts = r.array(_U8, n)
        sampled_ids = r.array(_I32, s)
        sampled_p = r.array(_U16, s)
        if sum(sampled_counts) != s:
            raise TokenCodecError("the token data is damaged (its counts)")
    if r.at != len(payload) or sum(counts) != c or (candidates and max(candidates) >= m):
        raise TokenCodecError("the token data is damaged (its counts)")

    def value(q: int) -> float:
        return next(overflow) if q == ESCAPE else 0.0 - q / STEP

    logprobs = [value(q) for q in token_q]
    table = [(i, t) for i, t in zip(table_ids, table_texts, strict=True)]
    out = []
    at = kept = 0
    for j in range(n):
        end = at + counts[j]
        top = tuple((*table[candidates[i]], value(candidate_q[i])) for i in range(at, end))
        at = end
        upto = kept + sampled_counts[j]
        sampled = tuple((sampled_ids[i], sampled_p[i] / 65535) for i in range(kept, upto))
        kept = upto
        out.append(
            TokenLogprob(
                ids[j],
                texts[j],
                logprobs[j],
                top,
                bool(flags[j] & REASONING),
                bool(flags[j] & FORCED),
                lse[j],
                sampled,
            )
        )
    return tuple(out)


def size_per_1000(tokens: Sequence[TokenLogprob]) -> int:
    """Bytes the encoded tokens take per 1000 tokens."""
    return len(encode(tokens)) * 1000 // max(len(tokens), 1)
