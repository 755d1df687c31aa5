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
sampling so that every symbol is equally likely.

A format generates codes for a campaign only if its randomness leaves
`SPARE_BITS` beyond the campaign's size (`require_entropy`): a guess then hits
one of the campaign's codes with a chance below 2**-40, and a fresh draw
almost never meets a code already there, so generation never hunts for
unused codes. In a campaign that hashes codes the last four characters are
shown (masked form), so only the random characters before them count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.domain.codekeys import SHOWN_CHARACTERS
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise

RandomBytes = Callable[[int], bytes]
UNAMBIGUOUS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
HEX = "0123456789ABCDEF"
LOOK_ALIKES = frozenset("01OIL")
SPARE_CHECK_SYMBOLS = "GHJKMNPQRSTUVWXYZ23456789"
MAX_LENGTH = 64
SPARE_BITS = 40


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
        data = self.length - int(self.include_check)
        values = _uniform(count * data, len(self.alphabet), random_bytes).reshape(count, data)
        if self.include_check:
            values = np.hstack([values, self._checks(values)[:, None]])
        symbols = np.frombuffer(self._check_symbols.encode(), dtype=np.uint8)
        return self._render(symbols[values])

    def _weights(self, n: int) -> npt.NDArray[np.int64]:
        return np.arange(n, dtype=np.int64) % (self.modulus - 1) + 1

    def _checks(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        p, n = self.modulus, values.shape[1]
        total = (values * self._weights(n)).sum(axis=1) % p
        w_check = int(self._weights(n + 1)[-1])
        result: npt.NDArray[np.int64] = (-total * pow(w_check, -1, p)) % p
        return result

    def _render(self, chars: npt.NDArray[np.uint8]) -> list[str]:
        parts, start = [], 0
        for size in self.groups:
            parts.append(chars[:, start : start + size])
            start += size
        hyphen = np.full((chars.shape[0], 1), ord("-"), dtype=np.uint8)
        pieces = [p for part in parts for p in (part, hyphen)][:-1]
        if self.prefix:
            head = np.frombuffer((self.prefix.upper() + "-").encode(), dtype=np.uint8)
            pieces.insert(0, np.broadcast_to(head, (chars.shape[0], head.size)))
        rows = np.ascontiguousarray(np.hstack(pieces))
        width = rows.shape[1]
        text = rows.tobytes().decode("ascii")
        return [text[i : i + width] for i in range(0, len(text), width)]

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


def _uniform(count: int, n: int, random_bytes: RandomBytes) -> npt.NDArray[np.int64]:
    """`count` values in [0, n), each equally likely (rejection sampling of random bytes)."""
    limit = 256 // n * n
    found: list[npt.NDArray[np.uint8]] = []
    have = 0
    while have < count:
        draw = np.frombuffer(random_bytes(int((count - have) * 256 / limit) + 64), np.uint8)
        kept = draw[draw < limit]
        found.append(kept)
        have += kept.size
    values: npt.NDArray[np.int64] = (np.concatenate(found)[:count] % n).astype(np.int64)
    return values
