"""The key a store finds a scan code by, and the form a code is shown in.

A campaign that hashes its codes (`Campaign.hash_codes`) keeps none of them
in plain: a code's key is a keyed hash (HMAC-SHA256, with the service's code
secret) of its normalised form, and it is shown masked, only its last four
characters left (`••••7KQ2`). Every other campaign, and every shared code,
keys a code by its normalised form and shows it as it was added.

The hash covers the normalised code alone, not its campaign, so that one
lookup finds a code typed without its `codeType` in any campaign. Another
secret gives other keys: codes hashed under a secret are found under it only.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.domain.campaigns import Campaign
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import checked, normalise

HASHED = "h1:"  # the prefix of a hashed key (a normalised code never holds ':')
MASK = "••••"
SHOWN_CHARACTERS = 4


def masked(scan_code: str) -> str:
    """A code as a campaign that hashes its codes shows it: its last four characters."""
    return MASK + normalise(scan_code)[-SHOWN_CHARACTERS:]


def shown(scan_code: str, *, hashed: bool) -> str:
    """A code as its campaign shows it: masked, or upper-case as it was given."""
    return masked(scan_code) if hashed else scan_code.strip().upper()


class CodeKeys:
    """Keys of scan codes, with the service's code secret (none: no campaign may hash)."""

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret.encode() if secret else None

    @property
    def can_hash(self) -> bool:
        return self._secret is not None

    def key(self, scan_code: str, *, hashed: bool) -> str:
        """The key of `scan_code` (refused if it can be no code) in a campaign that hashes
        its codes or not."""
        norm = checked(scan_code)
        return self._hashed(norm) if hashed else norm

    def of(self, campaign: Campaign, scan_code: str) -> str:
        """The key of `scan_code` in `campaign` (a shared one's is never hashed)."""
        return self.key(scan_code, hashed=campaign.hash_codes and not campaign.is_shared)

    def lookups(self, scan_code: str) -> tuple[str, ...]:
        """Every key `scan_code` may have in some campaign: plain, and hashed if this
        service can hash."""
        norm = checked(scan_code)
        return (norm, self._hashed(norm)) if self._secret else (norm,)

    def check_hashing(self) -> None:
        """Refuse a campaign that asks for hashed codes when there is no secret."""
        self._require_secret()

    def _hashed(self, norm: str) -> str:
        secret = self._require_secret()
        return HASHED + hmac.new(secret, norm.encode(), hashlib.sha256).hexdigest()

    def _require_secret(self) -> bytes:
        if self._secret is None:
            raise DomainError(
                ReasonCode.CODE_SECRET_MISSING,
                "this service has no code secret (REDEEM_CODE_SECRET): it cannot hash codes",
            )
        return self._secret


PLAIN = CodeKeys()  # keys of a service with no secret: plain campaigns only
