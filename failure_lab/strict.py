"""The base of every request model of the control contract: strict, finite, closed.

Unknown fields and wrong JSON types are refused (422), so a typo never falls back to a
default; no number may be ``NaN`` or infinite (``1e999`` reads as infinity). One leniency
follows JSON Schema, which the OpenAPI document speaks: its ``integer`` is any number without
a fraction, so ``3.0`` is the integer 3 (``"3"``, ``true`` and ``3.5`` stay refused).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, model_validator

INTEGERS: Final = (int, int | None)


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: int(value)
            if isinstance(value, float)
            and value.is_integer()
            and key in fields
            and fields[key].annotation in INTEGERS
            else value
            for key, value in data.items()
        }
