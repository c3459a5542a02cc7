"""Upper bounds that come from settings, declared once on the fields they bound.

A field of a request model whose maximum is a server setting carries ``SettingBound(name)``
in its ``Annotated`` metadata, ``name`` being a field of :class:`Settings`. Three readers use
that one declaration:

- :func:`check_bounds` walks a validated model (nested models and lists of them too) at the
  API edge and raises ``CapExceeded`` with the field's location, the bound and the setting;
- :func:`apply_to_openapi` turns each marker in the OpenAPI document into the schema's
  ``maximum`` and names the setting in its description, so the document states the bounds
  this process enforces and a generator of requests stays within them;
- :func:`bound_of` hands the bound of one field to a parser outside pydantic (the options
  header of the simulated API), so the header and the body share their limits.

The marker does not check at validation time: FastAPI validates bodies without the settings,
which belong to the app, not to the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from failure_lab.errors import CapExceeded
from failure_lab.settings import Settings

SETTING_KEY: Final = "x-setting"
"""The OpenAPI extension naming the setting that bounds a number."""

Loc = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SettingBound:
    """The field may not exceed the value of the setting ``setting``."""

    setting: str

    def __post_init__(self) -> None:
        if self.setting not in Settings.model_fields:
            raise ValueError(f"SettingBound: no setting {self.setting!r}")

    @property
    def env(self) -> str:
        """The variable that sets it, as a client needs to read it."""
        return f"FAILURE_LAB_{self.setting.upper()}"

    def cap(self, settings: Settings) -> float:
        value = getattr(settings, self.setting)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"setting {self.setting} is not a number")
        return value

    def check(self, name: str, value: float, settings: Settings, loc: Loc) -> None:
        """``CapExceeded`` when ``value`` is above the bound."""
        cap = self.cap(settings)
        if value > cap:
            raise CapExceeded(name, value, cap, self.env, loc=loc)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[SETTING_KEY] = self.setting
        return schema


def _marker(field: FieldInfo) -> SettingBound | None:
    return next((m for m in field.metadata if isinstance(m, SettingBound)), None)


def bound_of(model: type[BaseModel], name: str) -> SettingBound:
    """The bound declared on ``model.name``; ``LookupError`` if it has none."""
    marker = _marker(model.model_fields[name])
    if marker is None:
        raise LookupError(f"{model.__name__}.{name} has no SettingBound")
    return marker


def check_bounds(model: BaseModel, settings: Settings, loc: Loc = ("body",)) -> None:
    """Raise ``CapExceeded`` for the first number of ``model`` above its setting's bound."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        where = (*loc, field.alias or name)
        marker = _marker(field)
        if marker is not None and isinstance(value, int | float) and not isinstance(value, bool):
            marker.check(name, value, settings, where)
        if isinstance(value, BaseModel):
            check_bounds(value, settings, where)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    check_bounds(item, settings, (*where, index))


def within_bounds(model: Model, settings: Settings) -> Model:
    """``model`` with every number above its bound lowered to it (nested models too): what a
    process starts with when its settings bound a default lower than the default is."""
    changes: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        marker = _marker(field)
        if marker is not None and isinstance(value, int | float) and not isinstance(value, bool):
            cap = marker.cap(settings)
            if value > cap:
                changes[name] = int(cap) if isinstance(value, int) else float(cap)
        elif isinstance(value, BaseModel):
            changes[name] = within_bounds(value, settings)
    return model.model_copy(update=changes)


def apply_to_openapi(document: dict[str, Any], settings: Settings) -> None:
    """Set ``maximum`` (and say the setting) wherever a marker left ``x-setting``."""
    for node in _nodes(document):
        name = node.get(SETTING_KEY)
        if not isinstance(name, str):
            continue
        bound = SettingBound(name)
        cap = bound.cap(settings)
        for number in _numbers(node):
            number["maximum"] = min(cap, number.get("maximum", cap))
        said = f"At most {cap:g} ({bound.env})."
        node["description"] = f"{node['description']} {said}" if "description" in node else said


def _nodes(value: object) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _numbers(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if schema.get("type") in ("number", "integer"):
        yield schema
    for branch in schema.get("anyOf", ()):
        if isinstance(branch, dict):
            yield from _numbers(branch)
