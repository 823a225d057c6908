"""YAML -> `Spec`: the loader (what a spec file may be), the model's validation (pydantic; its errors worded
here, each with its field path), then the rules across fields."""

from __future__ import annotations

import difflib
import stat
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from .model import Spec
from .rules import cross_checks
from .values import SpecError, cut, shown


# -- pydantic's errors, worded for people, each with its field path ------------------------------------
_TYPES = {"string_type": "a string", "int_type": "an integer", "bool_type": "true or false", "list_type": "a list",
          "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping"}


def _members(tp: Any) -> list[type[BaseModel]]:
    """The models a field's type holds (through Optional, list, Annotated, a union of providers)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _members(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType, list):
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _tag(model: type[BaseModel]) -> str | None:
    """The `kind` that picks `model` out of a discriminated union (the DNS providers), if it is one."""
    field = model.model_fields.get("kind")
    return typing.get_args(field.annotation)[0] if field and typing.get_origin(field.annotation) is Literal else None


def _walk(loc: tuple) -> tuple[str, type[BaseModel] | None, list[type[BaseModel]]]:
    """pydantic's error location -> (our field path, the model its last key was looked up in, and that model's
    union siblings). A discriminated union puts the tag into the location: it picks the model, unshown."""
    path, models, holder, siblings, holder_siblings = "", [Spec], None, [], []
    for key in loc:
        if isinstance(key, int):
            path = f"{path}[{key}]"
            continue
        tags = {_tag(m): m for m in models if _tag(m)} if len(models) > 1 else {}
        if key in tags:
            models, siblings = [tags[key]], list(tags.values())
            continue
        holder = models[0] if models else None
        path = f"{path}.{key}" if path else key
        field = holder.model_fields.get(key) if holder else None
        models, holder_siblings, siblings = (_members(field.annotation) if field else []), siblings, []
    return path, holder, holder_siblings


def _problem(error: dict) -> tuple[str, str]:
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    path, holder, siblings = _walk(loc)
    if kind == "value_error":  # a check from `values` said what is wrong
        return path, str(error["ctx"]["error"])
    if kind == "missing":
        return path, "is required"
    if kind == "extra_forbidden":
        owners = [_tag(m) for m in siblings if loc[-1] in m.model_fields]
        if owners and holder is not None:  # a field of another DNS provider
            return path, f"applies to {' and '.join(owners)}, not {_tag(holder)}"
        allowed = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return path, "unknown field" + (f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = value.get("kind") if isinstance(value, dict) else None
        if not isinstance(value, dict):
            return path, f"expected a mapping, got {type(value).__name__}"
        if tag is None:
            return f"{path}.kind", "is required"
        return f"{path}.kind", f"{shown(tag)} is not one of {error['ctx']['expected_tags']}"
    if kind in _TYPES:
        got = shown(value) if kind.split("_")[0] in ("string", "int", "bool") else type(value).__name__
        return path, f"expected {_TYPES[kind]}, got {got}"
    if kind == "literal_error":
        return path, f"{shown(value)} is not one of {error['ctx']['expected']}"
    return path, cut(error["msg"], 200)


def parse_spec(data: Any, source: str = "spec", base_dir: Path = Path(".")) -> Spec:
    """Validate already-loaded YAML data; raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([("", "the spec must be a YAML mapping (hostname:, domains:, mailboxes: ...)")], source)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_problem(error) for error in exc.errors(include_url=False)], source) from None
    spec._base_dir = base_dir
    problems = cross_checks(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def spec_or_none(path: str) -> Spec | None:
    """The spec a command works on, or None after printing why it is invalid (the command then exits 2)."""
    try:
        return load_spec(path)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return None


class _SpecLoader(yaml.SafeLoader):
    """YAML as a spec may use it: a key given twice is an error (not "the last one wins"), and anchors and
    aliases are refused (a few hundred bytes of nested aliases expand to gigabytes: "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, f"the alias *{event.anchor[:40]}: a spec cannot use YAML "
                                       "anchors and aliases (write the value out)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.MarkedYAMLError(None, None, f"the key {shown(key)} is given twice (lines {seen[key]} "
                                           f"and {line}); keep one", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


MAX_SPEC_BYTES = 4 * 1024 ** 2  # a spec with 10,000 mailboxes is about 1 MB


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file. Relative file paths in it are relative to the file."""
    path = Path(path)
    source = cut(str(path), 200)
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_SPEC_BYTES:
            raw = path.read_bytes()  # only a regular file is opened: a FIFO or device could hang or never end
    except OSError as exc:
        raise SpecError([("", f"cannot read {source}: {exc.strerror or exc}")], source) from None
    except ValueError:
        raise SpecError([("", "the path holds a NUL character")], source) from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError([("", "is not a regular file")], source)
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError([("", f"the file is larger than {MAX_SPEC_BYTES // 1024 ** 2} MB")], source)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError([("", "the file is UTF-16; save it as UTF-8")], source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError([("", f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8")], source) from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([("", f"not valid YAML: {where}{cut(exc.problem or str(exc), 300)}")], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([("", "not valid YAML: " + cut(" ".join(str(exc).split()), 300))], source) from None
    except RecursionError:
        raise SpecError([("", "the YAML is nested too deeply")], source) from None
    return parse_spec(data, source, path.parent)


