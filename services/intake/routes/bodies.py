"""JSON bodies as routes take them: by their wire (camelCase) names only."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.config import ExtraValues
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

M = TypeVar("M", bound=BaseModel)


class WireNames:
    """Validates a body model by its aliases alone, though Python code may use field names.

    `extra` overrides the model's own policy for unknown fields, for a model
    that AMQP reads leniently and HTTP strictly.
    """

    def __init__(self, extra: ExtraValues | None = None) -> None:
        self._extra: ExtraValues | None = extra

    def __get_pydantic_core_schema__(
        self, model: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        def by_wire_names(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if isinstance(value, dict):
                return model.model_validate(value, extra=self._extra, by_name=False)
            return validate(value)

        return core_schema.no_info_wrap_validator_function(by_wire_names, handler(model))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self._extra == "forbid":
            handler.resolve_ref_schema(json_schema)["additionalProperties"] = False
        return json_schema


# A body, unknown fields as its model treats them.
Json = Annotated[M, WireNames()]
# A body whose unknown fields are refused, whatever its model's policy.
StrictJson = Annotated[M, WireNames(extra="forbid")]
