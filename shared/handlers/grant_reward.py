"""Grants the reward a code describes: `customCodeInfo.reward` -> `customRedemptionInfo`.

A code carrying `{"reward": {"item": "gems", "quantity": 500}}` redeems to
`{"granted": {"item": "gems", "quantity": 500}, "grantedTo": <userId>}`; a code
without a well-formed reward fails with an error the operator can act on.
"""

from collections.abc import Mapping
from typing import Any


async def grant_reward(request: Mapping[str, Any]) -> Mapping[str, Any]:
    reward = (request.get("customCodeInfo") or {}).get("reward")
    if not isinstance(reward, Mapping):
        return _refuse("NO_REWARD", "customCodeInfo.reward is missing")
    item, quantity = reward.get("item"), reward.get("quantity")
    if not isinstance(item, str) or not item:
        return _refuse("INVALID_REWARD", "reward.item must be a non-empty string")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        return _refuse("INVALID_REWARD", "reward.quantity must be a positive integer")
    granted = {"item": item, "quantity": quantity}
    info = dict(request.get("customRedemptionInfo") or {})
    info.update(granted=granted, grantedTo=request.get("userId"))
    return {"success": True, "complete": True, "customRedemptionInfo": info}


def _refuse(error_code: str, error_msg: str) -> Mapping[str, Any]:
    return {"success": False, "complete": True, "errorCode": error_code, "errorMsg": error_msg}
