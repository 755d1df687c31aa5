"""A campaign's validity window is checked in one place, for creation and update."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import Campaign, CodeUseType
from shared.domain.reasons import DomainError, ReasonCode

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end"),
    [(None, None), (NOW, None), (None, NOW), (NOW, NOW + timedelta(milliseconds=1))],
)
def test_an_open_or_forward_window_is_accepted(
    start: datetime | None, end: datetime | None
) -> None:
    campaign = Campaign("gems", CodeUseType.SINGLE, NOW, NOW, valid_start=start, valid_end=end)
    campaign.check_window()
    assert (campaign.valid_start, campaign.valid_end) == (start, end)


@pytest.mark.parametrize("end", [NOW, NOW - timedelta(days=1)])
def test_a_window_that_ends_before_it_starts_is_refused(end: datetime) -> None:
    campaign = Campaign("gems", CodeUseType.SINGLE, NOW, NOW, valid_start=NOW, valid_end=end)
    with pytest.raises(DomainError) as refused:
        campaign.check_window()
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE
    assert "validEnd" in refused.value.message
