"""The spec's JSON Schema, made from the model (for editors; `mailhost spec schema`)."""

from __future__ import annotations

from typing import Any

from .model import Spec


def _inline(node: Any, defs: dict) -> Any:
    """pydantic's schema with each `$ref` replaced by its definition: one self-contained tree, as editors
    show it (the model has no recursion)."""
    if isinstance(node, dict):
        if "$ref" in node:  # the definition, with what the field says beside it (description, default)
            node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        # (titles repeat the names; the discriminator's mapping points into the definitions)
        return {key: _inline(value, defs) for key, value in node.items() if key not in ("title", "discriminator")}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    body = _inline({k: v for k, v in schema.items() if k != "$defs"}, schema.get("$defs", {}))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "mailhost-spec.schema.json",
            "title": "mailhost spec", **body}
