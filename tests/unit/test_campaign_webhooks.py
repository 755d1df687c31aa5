"""A campaign's webhook is https, unless the campaign is marked for a private test partner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.model import Campaign, CodeUseType
from shared.domain.reasons import DomainError, ReasonCode

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def hooked(url: str, **fields: Any) -> Campaign:
    return Campaign(
        "hooked",
        CodeUseType.SINGLE,
        NOW,
        NOW,
        handler="hook",
        handler_transport="webhook",
        webhook_url=url,
        **fields,
    )


@pytest.mark.parametrize(
    "campaign",
    [
        hooked("https://partner.example/fulfil"),
        hooked("HTTPS://partner.example/fulfil"),
        hooked("https://partner.example/fulfil", private_test_partner=True),
        hooked("http://127.0.0.1:8090/fulfil", private_test_partner=True),
    ],
)
def test_https_or_a_private_test_partner_over_http_is_accepted(campaign: Campaign) -> None:
    try:
        campaign.check_fulfillment()
        refused = None
    except DomainError as error:
        refused = error.message
    assert refused is None


@pytest.mark.parametrize("url", ["http://partner.example/fulfil", "HTTP://10.0.0.1/fulfil"])
def test_plain_http_is_refused_for_a_campaign_not_marked_for_a_private_test_partner(
    url: str,
) -> None:
    with pytest.raises(DomainError) as refused:
        hooked(url).check_fulfillment()
    assert refused.value.reason is ReasonCode.INSECURE_WEBHOOK_URL
    assert "webhookUrl must be https, unless privateTestPartner" in refused.value.message


def test_the_private_test_partner_mark_applies_to_webhooks_only() -> None:
    amqp = Campaign(
        "stock",
        CodeUseType.SINGLE,
        NOW,
        NOW,
        handler="stock",
        handler_transport="amqp",
        private_test_partner=True,
    )
    with pytest.raises(DomainError) as refused:
        amqp.check_fulfillment()
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE
    assert "privateTestPartner applies to webhooks only" in refused.value.message
