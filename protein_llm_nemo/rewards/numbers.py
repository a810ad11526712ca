"""Numbers written in free text: signs (ASCII hyphen, unicode minus), decimal comma, scientific notation,
and an energy unit right after the number.

A number is not read inside an identifier: the digits of a mutation such as ``A23K`` or of ``ESM2`` are
preceded by a letter and skipped, so echoing the prompt's mutation does not add a number. A comma between
digits is a decimal comma (``1,5`` = 1.5): energies and pLDDTs never need thousands separators, and a list
written without spaces (``1,2,3``) still reads as several numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KJ_PER_KCAL = 4.184

# hyphen-minus, unicode minus (U+2212), en dash, figure dash, small and fullwidth hyphen-minus
_MINUS_SIGNS = "-\u2212\u2013\u2012\ufe63\uff0d"
_MINUS_CLASS = "[" + re.escape(_MINUS_SIGNS) + "]"
_SIGN = "[+" + re.escape(_MINUS_SIGNS) + "]"
_NUMBER = re.compile(
    r"(?<![\w.])"  # not the tail of an identifier or of another number
    rf"(?<![^\W\d_]{_MINUS_CLASS})"  # nor glued to a word by a hyphen ("ddG-1", "Cys-2")
    rf"(?P<sign>{_SIGN})?"
    r"(?P<int>\d+)(?:[.,](?P<frac>\d+))?"
    rf"(?:[eE](?P<exp>{_SIGN}?\d+)|\s*[x×*·]\s*10\s*(?:\^|\*\*)\s*\(?(?P<exp10>{_SIGN}?\d+)\)?)?"
    r"(?:\s*(?P<unit>kcal|kj)(?:\s*(?:/|·|per\s+|\s)\s*mole?(?:\s*(?:-1|\u207b\u00b9|\^-1|\^\{-1\}))?)?)?"
    r"(?![\w.]\d|\d|[^\W\d])",  # not the head of an identifier (2nd, 3D) or of a longer number
    re.I,
)


@dataclass(frozen=True)
class Quantity:
    """A number read from text; `unit` is ``"kcal"``, ``"kj"`` or None (none written)."""

    value: float
    unit: str | None
    start: int
    end: int


def _signed(text: str | None) -> str:
    if not text:
        return ""
    return "-" + text[1:] if text[0] in _MINUS_SIGNS else text.lstrip("+")


def find_numbers(text: str) -> list[Quantity]:
    """Every number of `text`, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        digits = match["int"] + ("." + match["frac"] if match["frac"] else "")
        exponent = match["exp"] or match["exp10"]
        try:
            value = float(_signed(match["sign"]) + digits + ("e" + _signed(exponent) if exponent else ""))
        except OverflowError:  # a 10^999999 exponent: not an energy, not a pLDDT
            value = float("inf")
        unit = match["unit"].lower() if match["unit"] else None
        found.append(Quantity(value, unit, match.start(), match.end()))
    return found


def distinct_values(values: list[float], tolerance: float) -> list[float]:
    """The values that differ by more than `tolerance` from every earlier one (first occurrence kept)."""
    kept: list[float] = []
    for value in values:
        if all(abs(value - other) > tolerance for other in kept):
            kept.append(value)
    return kept
