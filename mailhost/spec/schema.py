"""The spec's JSON Schema, made from the model (for editors; `mailhost spec schema`)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal

from .model import Spec


def _schema(tp: Any) -> dict:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema(args[0]), {"type": "null"}]}
    if origin is Annotated:
        return dict(typing.get_args(tp)[1].schema)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0])}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        props, required = {}, []
        for f in (f for f in dataclasses.fields(tp) if not f.metadata.get("internal")):
            prop = _schema(hints[f.name])
            prop["description"] = f.metadata.get("doc", "")
            if f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
                prop["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                if not dataclasses.is_dataclass(default):
                    prop["default"] = default
            else:
                if f.default is dataclasses.MISSING:
                    required.append(f.name)
            props[f.name] = prop
        return {"type": "object", "additionalProperties": False, "properties": props, "required": required}
    return {"type": {str: "string", int: "integer", bool: "boolean"}[tp]}


def json_schema() -> dict:
    schema = _schema(Spec)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "mailhost-spec.schema.json",
            "title": "mailhost spec", **schema}
