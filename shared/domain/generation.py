"""Code generation: formats, a cryptographic source, and a check character.

A format is an alphabet, a length, a grouping and an optional prefix. With
`includeCheck` the last character is a check character: the weighted sum of
the characters' values, weights 1, 2, 3, ... cycling below a prime modulus
p >= the alphabet's size, is 0 mod p. Since every weight is invertible mod p
and neighbours' weights differ, every single substitution and every swap of
neighbours changes the sum, and is caught. The default alphabet has 31
symbols, a prime, and none that look alike (no 0/O, 1/I/L); a format whose
alphabet is not prime-sized gets the few extra symbols it needs for its check
character alone (a GUID's hex digits: one, `G`).

Generation is vectorised (numpy) over bulk random bytes, with rejection
sampling so that every symbol is equally likely: a batch's random bytes are
drawn at once and turned into characters through a table, a position at a
time over the whole batch.

Codes made in bulk get time-ordered ids (`time_ordered_ids`, UUIDv7) and are
built without `Code.__init__` once the first of a kind is made by `new_code`
(`alike`), with the garbage collector held off meanwhile (`collection_paused`):
a million of them must cost seconds, not minutes.

A format generates codes for a campaign only if its randomness leaves
`SPARE_BITS` beyond the campaign's size (`require_entropy`): a guess then hits
one of the campaign's codes with a chance below 2**-40, and a fresh draw
almost never meets a code already there, so generation never hunts for
unused codes. In a campaign that hashes codes the last four characters are
shown (masked form), so only the random characters before them count.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.domain.codekeys import SHOWN_CHARACTERS
from shared.domain.codes import Code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise

RandomBytes = Callable[[int], bytes]
UNAMBIGUOUS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
HEX = "0123456789ABCDEF"
LOOK_ALIKES = frozenset("01OIL")
SPARE_CHECK_SYMBOLS = "GHJKMNPQRSTUVWXYZ23456789"
MAX_LENGTH = 64
SPARE_BITS = 40
Chars = npt.NDArray[np.uint8]


def _invalid(message: str) -> DomainError:
    return DomainError(ReasonCode.INVALID_PARAMETER_VALUE, message)


def _next_prime(n: int) -> int:
    def prime(k: int) -> bool:
        return k > 1 and all(k % d for d in range(2, int(k**0.5) + 1))

    while not prime(n):
        n += 1
    return n


@dataclass(frozen=True)
class Format:
    """How generated codes look: `groups` are the lengths of the hyphenated parts."""

    alphabet: str
    groups: tuple[int, ...]
    include_check: bool = False
    prefix: str | None = None
    _check_symbols: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise _invalid("the alphabet must be non-empty, each character once")
        if any(not ("0" <= c <= "9" or "A" <= c <= "Z") for c in self.alphabet):
            raise _invalid("the alphabet may hold only the digits and A to Z")
        if not 4 <= self.length <= MAX_LENGTH or any(g < 1 for g in self.groups):
            raise _invalid(f"codes are 4 to {MAX_LENGTH} characters long")
        if self.prefix is not None and not re.fullmatch(r"[0-9A-Z]{1,16}", self.prefix.upper()):
            raise _invalid("a prefix is 1 to 16 letters and digits")
        spare = [c for c in SPARE_CHECK_SYMBOLS if c not in self.alphabet]
        extra = _next_prime(len(self.alphabet)) - len(self.alphabet)
        object.__setattr__(self, "_check_symbols", self.alphabet + "".join(spare[:extra]))

    @property
    def length(self) -> int:
        return sum(self.groups)

    @property
    def random_bits(self) -> float:
        """The randomness of one code: its characters drawn at random (not its check)."""
        return (self.length - int(self.include_check)) * math.log2(len(self.alphabet))

    def secret_bits(self, *, hashed: bool) -> float:
        """The randomness of one code that a guesser is not shown: in a campaign that hashes
        codes, every answer shows its last four characters (`codekeys.masked`), so only
        its random characters before them count (a check character is among the four)."""
        if not hashed:
            return self.random_bits
        return max(self.length - SHOWN_CHARACTERS, 0) * math.log2(len(self.alphabet))

    @property
    def modulus(self) -> int:
        return len(self._check_symbols)

    @classmethod
    def named(cls, name: str, details: Mapping[str, Any], prefix: str | None = None) -> Format:
        """The reference's `algorithmName` and `algorithmDetailsJson`."""
        check = details.get("includeCheck", False)
        if not isinstance(check, bool):
            raise _invalid("includeCheck must be true or false")
        if name == "FiveByFive":
            return cls(UNAMBIGUOUS, (5,) * 5, check, prefix)
        if name == "StructuredGuid":
            return cls(HEX, (8, 4, 4, 4, 12), check, prefix)
        if name == "Custom":
            return cls._custom(details, check, prefix)
        raise _invalid(f"unknown algorithmName {name!r}: FiveByFive, StructuredGuid or Custom")

    @classmethod
    def _custom(cls, details: Mapping[str, Any], check: bool, prefix: str | None) -> Format:
        alphabet = str(details.get("alphabet", UNAMBIGUOUS)).upper()
        if LOOK_ALIKES & set(alphabet):
            raise _invalid("the alphabet may not hold look-alike characters (0, O, 1, I, L)")
        length, group = details.get("length", 12), details.get("group", 4)
        if not (isinstance(length, int) and isinstance(group, int) and group >= 0):
            raise _invalid("length and group must be whole numbers")
        if not 4 <= length <= MAX_LENGTH:
            raise _invalid(f"codes are 4 to {MAX_LENGTH} characters long")
        size = group or length
        groups = (size,) * (length // size) + ((length % size,) if length % size else ())
        return cls(alphabet, groups, check, prefix)

    def generate(self, count: int, random_bytes: RandomBytes) -> list[str]:
        """`count` codes from `random_bytes` (give it `secrets.token_bytes`)."""
        return self._render(self._chars(count, random_bytes), hyphens=True)

    def generate_keyed(self, count: int, random_bytes: RandomBytes) -> tuple[list[str], list[str]]:
        """`count` codes, and the normalised form of each (`scancode.normalise`)."""
        chars = self._chars(count, random_bytes)
        return self._render(chars, hyphens=True), self._render(chars, hyphens=False)

    def _chars(self, count: int, random_bytes: RandomBytes) -> Chars:
        """`count` codes' characters, a row each (prefix and hyphens left out)."""
        data = self.length - int(self.include_check)
        values = _uniform(count * data, len(self.alphabet), random_bytes).reshape(data, count)
        if self.include_check:
            values = np.vstack([values, self._checks(values)[None, :]])
        symbols = np.frombuffer(self._check_symbols.encode(), dtype=np.uint8)
        return np.ascontiguousarray(symbols[values].T)

    def _weights(self, n: int) -> npt.NDArray[np.int64]:
        return np.arange(n, dtype=np.int64) % (self.modulus - 1) + 1

    def _checks(self, values: Chars) -> Chars:
        """The check value of each column of `values` (a code's values down a column)."""
        p, n = self.modulus, values.shape[0]
        weights = [int(w) for w in self._weights(n + 1)]
        total = np.zeros(values.shape[1], dtype=np.uint32)
        for row, weight in zip(values, weights, strict=False):
            total += row.astype(np.uint32) * weight  # a uint8 row would wrap (numpy 1.x)
        inverse = np.uint32(pow(weights[-1], -1, p))
        checks: Chars = ((p - total % p) % p * inverse % p).astype(np.uint8)
        return checks

    def _render(self, chars: Chars, *, hyphens: bool) -> list[str]:
        """Codes as text: the prefix, then the groups (hyphenated, or run together as
        normalised), one a row of `chars`."""
        head = (self.prefix.upper() + ("-" if hyphens else "")) if self.prefix else ""
        parts, column = [np.frombuffer(head.encode(), dtype=np.uint8)], 0
        for size in self.groups:
            if hyphens and column:
                parts.append(np.frombuffer(b"-", dtype=np.uint8))
            parts.append(chars[:, column : column + size])
            column += size
        parts.append(np.frombuffer(b"\n", dtype=np.uint8))
        return _lines(parts, chars.shape[0])

    def verify(self, code: str) -> bool:
        """Whether `code` (typed any way) is of this format, check character included."""
        norm = normalise(code)
        head = normalise(self.prefix or "")
        if not norm.startswith(head):
            return False
        body = norm[len(head) :]
        index = {c: n for n, c in enumerate(self._check_symbols)}
        data = body[:-1] if self.include_check else body
        if len(body) != self.length or any(c not in self.alphabet for c in data):
            return False
        if not self.include_check:
            return True
        if body[-1] not in index:
            return False
        values = [index[c] for c in body]
        weights = self._weights(len(values))
        return int(np.dot(values, weights)) % self.modulus == 0


def require_entropy(fmt: Format, inventory: int, *, hashed: bool = False) -> None:
    """Refuse `fmt` for a campaign that would hold `inventory` codes unless its codes
    have log2(inventory) + SPARE_BITS bits of randomness; in a campaign that hashes
    codes (`hashed`), not counting the characters its masked form shows."""
    needed = math.log2(max(inventory, 1)) + SPARE_BITS
    bits = fmt.secret_bits(hashed=hashed)
    if bits < needed:
        has, needs = math.floor(bits * 10) / 10, math.ceil(needed * 10) / 10
        hidden = " beyond the last four characters a masked code shows" if hashed else ""
        raise _invalid(
            f"this format's codes have {has} bits of randomness{hidden}; a campaign of"
            f" {inventory} codes needs at least {needs} (log2 of its codes + {SPARE_BITS}):"
            " use a longer code or a larger alphabet"
        )


def _uniform(count: int, n: int, random_bytes: RandomBytes) -> Chars:
    """`count` values in [0, n), each equally likely (rejection sampling of random bytes)."""
    limit = 256 // n * n
    found: list[Chars] = []
    have = 0
    while have < count:
        draw = np.frombuffer(random_bytes(int((count - have) * 256 / limit) + 64), np.uint8)
        kept = draw[draw < limit]
        found.append(kept)
        have += kept.size
    values: Chars = np.concatenate(found)[:count] % np.uint8(n)
    return values


def _lines(parts: list[Chars], rows: int) -> list[str]:
    """`rows` lines of ASCII, each the `parts` side by side (a 1-D part is the same on every
    line, a 2-D one holds a row a line), the last part ending each line with a newline."""
    width = sum(part.shape[-1] for part in parts)
    out = np.empty((rows, width), dtype=np.uint8)
    column = 0
    for part in parts:
        out[:, column : column + part.shape[-1]] = part
        column += part.shape[-1]
    return out.tobytes().decode("ascii").split("\n")[:-1]


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def time_ordered_ids(count: int, now: datetime, random_bytes: RandomBytes) -> list[str]:
    """`count` ids for codes made at `now`: UUIDs of version 7 (RFC 9562), the instant's
    milliseconds then 74 random bits. A store indexes them in the order they were made, so
    a bulk load appends to its indexes of ids instead of writing all over them."""
    ms = round(now.timestamp() * 1000)
    raw = np.empty((count, 16), dtype=np.uint8)
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6:] = np.frombuffer(random_bytes(count * 10), dtype=np.uint8).reshape(count, 10)
    raw[:, 6] = raw[:, 6] & 0x0F | 0x70  # version 7
    raw[:, 8] = raw[:, 8] & 0x3F | 0x80  # the variant of RFC 9562
    digits = _HEX_DIGITS[np.stack([raw >> 4, raw & 0x0F], axis=2).reshape(count, 32)]
    hyphen = np.frombuffer(b"-", dtype=np.uint8)
    spans = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
    parts: list[Chars] = []
    for start, end in spans:
        parts += [digits[:, start:end], hyphen]
    parts[-1] = np.frombuffer(b"\n", dtype=np.uint8)
    return _lines(parts, count)


def alike(code: Code, **fields: Any) -> Code:
    """`code` with `fields` changed, made without `Code.__init__` (a twentieth of its cost):
    for bulk paths that make or read codes by the million. Only for values that were
    checked (as `new_code` checks a new code's, or as a store kept them); `key` is not
    derived from `scan_code` here, so change both or neither."""
    made: Code = object.__new__(Code)
    made.__dict__.update(code.__dict__, **fields)
    return made


@contextmanager
def collection_paused() -> Iterator[None]:
    """The garbage collector held off while a bulk path makes or reads a batch of codes.
    Each few hundred objects made would start a collection, and objects that live as long
    as a batch are soon walked by full ones, again and again: about a third of a bulk
    load's time. Only around code that does not await, which nothing else interleaves
    with; the collector runs as usual after it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
