"""YAML -> `Spec`: the loader (what a spec file may be), the builder (data -> dataclasses, every problem with its
field path), then the rules across fields."""

from __future__ import annotations

import dataclasses
import difflib
import stat
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .model import Spec
from .rules import cross_checks
from .values import SpecError, control_free, cut, shown


# -- building: YAML data -> dataclasses, collecting every problem with its path ------------------------
def _path(parent: str, key: str | int) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else (f"{parent}.{key}" if parent else key)


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {str: "a string", int: "an integer", bool: "true or false"}.get(tp, str(tp))


class _Builder:
    def __init__(self):
        self.problems: list[tuple[str, str]] = []

    def build(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return None if value is None else self.build(args[0], value, path)
        if origin is Annotated:
            base, check = typing.get_args(tp)[:2]
            try:
                return check(value)
            except ValueError as exc:
                self.problems.append((path, str(exc)))
                return None
        if origin is Literal:  # of the very type: 2048.0 or true is not 2048 or 1
            if not any(type(value) is type(arg) and value == arg for arg in typing.get_args(tp)):
                self.problems.append((path, f"{shown(value)} is not {_describe(tp)}"))
            return value
        if origin is list:
            if not isinstance(value, list):
                self.problems.append((path, f"expected {_describe(tp)}, got {type(value).__name__}"))
                return []
            (item,) = typing.get_args(tp)
            return [self.build(item, v, _path(path, i)) for i, v in enumerate(value)]
        if dataclasses.is_dataclass(tp):
            return self.build_dataclass(tp, value, path)
        if tp is bool or tp is int or tp is str:
            if type(value) is not tp:
                self.problems.append((path, f"expected {_describe(tp)}, got {shown(value)}"))
            elif tp is str and not control_free(value):
                self.problems.append((path, f"{shown(value)} holds a line break or another control character"))
            return value
        raise TypeError(f"spec field type {tp} is not supported")  # a bug in this module, not in the spec

    def build_dataclass(self, tp: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.problems.append((path, f"expected a mapping, got {type(value).__name__}"))
            return None
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("internal")}
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                self.problems.append((_path(path, str(key)), "unknown field" +
                                      (f" (did you mean '{close[0]}'?)" if close else
                                       f"; allowed: {', '.join(fields)}")))
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = self.build(hints[name], value[name], _path(path, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.problems.append((_path(path, name), "is required"))
                kwargs[name] = None
        try:
            return tp(**kwargs)
        except TypeError:
            return None



def parse_spec(data: Any, source: str = "spec", base_dir: Path = Path(".")) -> Spec:
    """Validate already-loaded YAML data; raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([("", "the spec must be a YAML mapping (hostname:, domains:, mailboxes: ...)")], source)
    builder = _Builder()
    spec = builder.build_dataclass(Spec, data, "")
    if builder.problems or spec is None:
        raise SpecError(builder.problems, source)
    spec = dataclasses.replace(spec, base_dir=base_dir)
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


