"""Checking one declared value against its kind, range and choices: the one
check behind the generation settings (``params.py``) and the training options
(``trainer/settings.py``), so both say a wrong value the same way, in one line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from localchat.core.errors import LocalChatError

KIND_WORDS = {float: "a number", int: "a whole number", str: "text"}


def shown(value: Any) -> str:
    """A number as help texts and messages show it: 2e-4, 0.5, 512, 2147483647."""
    if isinstance(value, float) and not value.is_integer():
        if value and abs(value) < 0.01:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    return str(int(value)) if isinstance(value, int | float) else str(value)


def check_scalar(
    value: Any,
    kind: type,
    *,
    what: str,
    error: type[LocalChatError],
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[str] = (),
) -> Any:
    """``value`` as a ``kind`` (float, int or str; an int is taken for a
    float), within ``minimum``..``maximum`` or one of ``choices``; else a
    one-line ``error`` naming it ``what``."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise error(f"{what} must be {KIND_WORDS[kind]}, got {value!r}")
    if kind is str:
        if choices and value not in choices:
            raise error(f"{what} must be one of {', '.join(choices)}, got {value!r}")
        return value
    number = float(value)  # type: ignore[arg-type]  # int or float, checked above
    if not math.isfinite(number):
        raise error(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise error(f"{what} must be at least {shown(minimum)}, got {value!r}")
    if maximum is not None and number > maximum:
        raise error(f"{what} must be at most {shown(maximum)}, got {value!r}")
    return value
