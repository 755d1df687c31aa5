"""Names the domain's modules share: a caller's free-form JSON, a source of new ids."""

from collections.abc import Callable, Mapping
from typing import Any

JsonMap = Mapping[str, Any]
NewId = Callable[[], str]
