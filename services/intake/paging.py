"""`SysGetCodeTypePage` paging: an opaque, signed `context` names the query and its page.

A caller moves with `pageOffset` from a context it was given; it cannot edit
one into another query, since the signature would no longer match. Pages are
numbered 1 to `MAX_PAGE`: one beyond is refused, however it was reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer

from shared.domain.model import CampaignFilter, CodeUseType
from shared.domain.reasons import DomainError, ReasonCode

MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class PageQuery:
    rows: int
    page: int
    code_use_type: str | None = None
    valid_now: bool | None = None
    is_disabled: bool | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.page <= MAX_PAGE:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                f"pages are numbered 1 to {MAX_PAGE}, not {self.page}",
            )

    def filter(self, now: datetime) -> CampaignFilter:
        return CampaignFilter(
            code_use_type=CodeUseType(self.code_use_type) if self.code_use_type else None,
            valid_at=now if self.valid_now else None,
            is_disabled=self.is_disabled,
        )

    def moved(self, offset: int) -> PageQuery:
        return replace(self, page=max(1, self.page + offset))


class Contexts:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="campaign-pages")

    def dump(self, query: PageQuery) -> str:
        return self._serializer.dumps(asdict(query))

    def load(self, context: str) -> PageQuery:
        try:
            return PageQuery(**self._serializer.loads(context))
        except (BadSignature, TypeError):
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE, "this paging context was not issued here"
            ) from None
