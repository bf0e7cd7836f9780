"""YAML loading that remembers where every key and list item was written.

Why: every bad-input message must name "path:line". PyYAML's node marks carry the line;
this loader keeps them on plain dict/list subclasses (LineDict, LineList) so the rest of the
code works with ordinary Python data and can still ask `where(data, loc)` for a line.
Duplicate keys, which PyYAML silently overwrites, are errors here. libyaml (CSafeLoader) is
used when available: it keeps a 10,000-cell scenario fast to load.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from harness.errors import InputError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A mapping plus `line` (its own first line) and `key_lines` {key: line}."""

    __slots__ = ("line", "key_lines")


class LineList(list):
    """A sequence plus `line` and `item_lines` [line of each item]."""

    __slots__ = ("line", "item_lines")


class _LineLoader(_Base):  # type: ignore[misc, valid-type]
    path = "<yaml>"


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
SECRET_KEYS = frozenset({"password", "secret", "token", "passphrase"})
SECRET_MESSAGE = "secrets must not be written inline; use password_env: NAME"


class _Builder:
    """Composed YAML nodes -> LineDict/LineList/scalars, in one direct walk.

    Faster than PyYAML's generic constructor (it matters for 10,000-cell files), and the one
    place that sees every key: duplicate keys and inline secrets are rejected here.
    """

    def __init__(self, loader: _LineLoader):
        self.loader = loader
        self.path = loader.path
        self.active: set[int] = set()

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            tag = node.tag
            if tag == _STR:
                return node.value
            if tag == _INT:
                return self.loader.construct_yaml_int(node)
            if tag == _NULL:
                return None
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.active:
            raise InputError(f"{self.path}:{node.start_mark.line + 1}", "bad YAML: recursive alias")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
                return self._map(node)
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
                out = LineList(self.build(child) for child in node.value)
                out.line = node.start_mark.line + 1
                out.item_lines = [child.start_mark.line + 1 for child in node.value]
                return out
            return self.loader.construct_object(node, deep=True)
        finally:
            self.active.discard(id(node))

    def _map(self, node: yaml.MappingNode) -> LineDict:
        if any(k.tag == _MERGE for k, _ in node.value):
            self.loader.flatten_mapping(node)
        data = LineDict()
        data.line = node.start_mark.line + 1
        lines = data.key_lines = {}
        for key_node, value_node in node.value:
            key = self.build(key_node)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise InputError(f"{self.path}:{line}", "a mapping key must be a plain value") from None
            if key in data:
                raise InputError(f"{self.path}:{line}", f"duplicate key {key!r} (first at line {lines[key]})")
            if isinstance(key, str) and key.lower() in SECRET_KEYS:
                raise InputError(f"{self.path}:{line}", f"{key}: {SECRET_MESSAGE}")
            data[key] = self.build(value_node)
            lines[key] = line
        return data


# YAML 1.2 booleans: only true/false. YAML 1.1 would read the scenario key `on:` (and yes/no/off)
# as a boolean, which is never what a scenario or inventory author means.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load(path: str | Path, text: str | None = None) -> Any:
    """Parse one YAML document; YAML errors become InputError("path:line", ...)."""
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"{path}:1", f"cannot read file: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise InputError(f"{path}:1", f"not UTF-8 text ({err.reason})") from None
    loader = _LineLoader(text)
    loader.path = path
    try:
        node = loader.get_single_node()
        return None if node is None else _Builder(loader).build(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = err.problem or err.context or "bad YAML"
        context = ""
        if err.context and err.problem:
            started = f" started at line {err.context_mark.line + 1}" if err.context_mark else ""
            context = f" ({err.context}{started})"
        raise InputError(f"{path}:{line}", f"bad YAML: {problem}{context}") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}:1", f"bad YAML: {str(err).splitlines()[0]}") from None
    finally:
        loader.dispose()


def line_of(data: Any, loc: Iterable[Any]) -> int:
    """The line of the deepest element of `loc` (keys and list indexes) that exists in `data`."""
    line = getattr(data, "line", 1)
    cur = data
    for step in loc:
        if isinstance(cur, LineDict) and step in cur:
            line = cur.key_lines.get(step, line)
            cur = cur[step]
        elif isinstance(cur, LineList) and isinstance(step, int) and 0 <= step < len(cur):
            line = cur.item_lines[step]
            cur = cur[step]
        else:
            break
    return line


def where(path: str, data: Any, loc: Iterable[Any] = ()) -> str:
    """"path:line" for a location inside loaded data."""
    return f"{path}:{line_of(data, loc)}"


def reject_inline_secrets(path: str, data: Any) -> None:
    """Credentials only by reference: any password/secret/token/passphrase key is an error.

    yamlfile.load already checks while building; this is for data that came from elsewhere.
    """
    if getattr(data, "line", None) is not None:  # built by load(): checked already
        return
    stack = [data]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for key, value in cur.items():
                if isinstance(key, str) and key.lower() in SECRET_KEYS:
                    line = cur.key_lines.get(key, 1) if isinstance(cur, LineDict) else 1
                    raise InputError(f"{path}:{line}", f"{key}: {SECRET_MESSAGE}")
                stack.append(value)
        elif isinstance(cur, list):
            stack.extend(cur)


def top_level_kind(path: str | Path, data: Any = None) -> str | None:
    """"scenario" or "inventory" by the file's top-level key; None when neither."""
    if data is None:
        data = load(path)
    if isinstance(data, dict):
        if "scenario" in data:
            return "scenario"
        if "inventory" in data:
            return "inventory"
    return None


def _describe_pydantic_error(err: dict, model_fields: Iterable[str] | None = None) -> str:
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith("function-")]
    kind = err.get("type", "")
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        allowed = f" (allowed: {', '.join(model_fields)})" if model_fields else ""
        return f"unknown key {field!r}{allowed}"
    if kind == "missing":
        return f"missing key {field!r}"
    msg = err.get("msg", "invalid")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "literal_error":
        msg = msg.replace("Input should be", "expected")
        return f"{field}: {msg}, not {err.get('input')!r}"
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing", "bool_type", "bool_parsing",
                "string_type", "dict_type", "list_type", "model_type"):
        msg = msg.replace("Input should be", "expected")
        return f"{field}: {msg}, not {err.get('input')!r}"
    return f"{field}: {msg}" if field and not msg.startswith(f"{field}") else msg


def input_error_from_pydantic(path: str, data: Any, exc: Any, loc_prefix: tuple = (),
                              fields_for: Any = None) -> InputError:
    """The first error of a pydantic ValidationError as one "path:line: message".

    `fields_for(loc)` may return the allowed keys at a location, to list them on unknown keys.
    """
    err = exc.errors(include_url=False)[0]
    loc = tuple(loc_prefix) + tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
    allowed = fields_for(loc[:-1]) if fields_for and err.get("type") == "extra_forbidden" else None
    return InputError(where(path, data, loc), _describe_pydantic_error(err, allowed))
