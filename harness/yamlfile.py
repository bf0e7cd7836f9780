"""YAML loading that remembers where every key and list item was written, and stays bounded.

Why: every bad-input message must name "path:line", and any file -- however hostile -- must be
answered in bounded time and memory with one such line. The loader reads PyYAML's event stream
(libyaml's CParser when available) and builds plain dict/list subclasses (LineDict, LineList)
that keep the line of each key and item, so the rest of the code works with ordinary Python
data and can still ask `where(data, loc)` for a line.

Limits (each breach is one "path:line: ..." InputError, raised before the cost is paid):
file size (MAX_FILE_BYTES, checked before reading; only regular files are read), nesting depth
(MAX_DEPTH, counted on the event stream, no recursion anywhere), the number of values once
aliases are expanded (MAX_NODES: a "billion laughs" file is refused at the alias that crosses
it), the length of one value (MAX_SCALAR_CHARS) and of an integer (MAX_INT_DIGITS).
Only plain data is built: str, int, float, bool, null, mappings, sequences. Any other tag
(`!!python/object`, `!!timestamp`, `!!binary`, `!custom`) is refused, never constructed; dates
stay text. Duplicate keys are errors, merge keys (`<<`) work, one document per file, a UTF-8
BOM and CRLF line ends are accepted, any other encoding is refused with the line of the first
bad byte.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml import events as _ev

from harness import textfile
from harness.errors import InputError
from harness.secrets import SECRET_KEY_MESSAGE, is_secret_key

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 400_000  # a 10,000-cell scenario is ~190,000; at ~2.5 us each, the cap is reached in ~1 s
MAX_SCALAR_CHARS = 64 * 1024
MAX_INT_DIGITS = 30


class LineDict(dict[Any, Any]):
    """A mapping plus `line` (its own first line) and `key_lines` {key: line}."""

    __slots__ = ("key_lines", "line")
    line: int
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence plus `line` and `item_lines` [line of each item]."""

    __slots__ = ("item_lines", "line")
    line: int
    item_lines: list[int]


class _LineLoader(_Base):  # type: ignore[misc, valid-type]
    path = "<yaml>"


_Y = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = _Y + "str", _Y + "int", _Y + "float", _Y + "bool", _Y + "null"
_MAP, _SEQ, _MERGE = _Y + "map", _Y + "seq", _Y + "merge"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_BOOL_WORDS = {"true": True, "false": False}
_INT_TEXT = re.compile(r"[-+]?(?:0b[01_]+|0o?[0-7_]+|[0-9][0-9_]*|0x[0-9a-fA-F_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)")
_MERGE_KEY = object()


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_Y):] if tag.startswith(_Y) else tag


def read_text(path: str | Path, shown_as: str | None = None) -> str:
    """The file's text: a regular file under MAX_FILE_BYTES, UTF-8 (BOM allowed); else InputError."""
    return textfile.read_text(path, MAX_FILE_BYTES, "YAML file", shown_as)


def decode(path: str, raw: bytes) -> str:
    """UTF-8 (an initial BOM dropped, CRLF kept for YAML to fold); other encodings refused."""
    return textfile.decode(path, raw)


class _Frame:
    __slots__ = ("anchor", "is_map", "key", "key_line", "merges", "size", "value")

    def __init__(self, value, is_map: bool, anchor: str | None):
        self.value = value
        self.is_map = is_map
        self.anchor = anchor
        self.key: Any = None
        self.key_line = 0
        self.merges: list = []
        self.size = 1


_NO_KEY = object()


class _Builder:
    """YAML events -> LineDict/LineList/scalars, iteratively, with every limit counted as it goes.

    The one place that sees every key and value: duplicate keys, inline secrets, tags, sizes.
    """

    def __init__(self, loader: _LineLoader):
        self.loader = loader
        self.path = loader.path
        self.anchors: dict[str, tuple[Any, int] | None] = {}  # None: still being built (recursive alias)
        self.nodes = 0

    def fail(self, line: int, message: str) -> InputError:
        return InputError(f"{self.path}:{line}", message)

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(_ev.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        value = self._root()
        loader.get_event()  # DocumentEnd
        if not loader.check_event(_ev.StreamEndEvent):
            line = loader.peek_event().start_mark.line + 1
            raise self.fail(line, "a second YAML document ('---'): one file holds one scenario or inventory")
        return value

    def _count(self, line: int, size: int) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise self.fail(line, f"more than {MAX_NODES} YAML values (keys, items and each use of an "
                                  f"alias count); a scenario or inventory is far smaller")

    def _root(self) -> Any:
        stack: list[_Frame] = []
        get = self.loader.get_event
        while True:
            event = get()
            line = event.start_mark.line + 1
            cls = type(event)
            if cls is _ev.ScalarEvent:
                value, size, is_plain = self._scalar(event, line), 1, True
                self._count(line, 1)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
            elif cls is _ev.AliasEvent:
                if event.anchor not in self.anchors:
                    raise self.fail(line, f"bad YAML: unknown alias *{event.anchor}")
                found = self.anchors[event.anchor]
                if found is None:
                    raise self.fail(line, f"bad YAML: recursive alias *{event.anchor}")
                value, size = found
                is_plain = not isinstance(value, (dict, list))
                self._count(line, size)
            elif cls is _ev.MappingStartEvent or cls is _ev.SequenceStartEvent:
                is_map = cls is _ev.MappingStartEvent
                tag = event.tag
                if tag not in (None, "!", _MAP if is_map else _SEQ):
                    raise self.fail(line, f"YAML tag {_short_tag(tag)} is not allowed (plain data only)")
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(line, f"nesting deeper than {MAX_DEPTH} levels")
                container: LineDict | LineList
                if is_map:
                    container = LineDict()
                    container.key_lines = {}
                else:
                    container = LineList()
                    container.item_lines = []
                container.line = line
                frame = _Frame(container, is_map, event.anchor)
                frame.key = _NO_KEY
                if event.anchor is not None:
                    self.anchors[event.anchor] = None
                if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
                    raise self.fail(line, "a mapping key must be a plain value")
                self._count(line, 1)
                stack.append(frame)
                continue
            elif cls is _ev.MappingEndEvent or cls is _ev.SequenceEndEvent:
                frame = stack.pop()
                value, size, is_plain = frame.value, frame.size, False
                if frame.is_map and frame.merges:
                    self._merge(frame)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (value, size)
                line = value.line
            else:  # pragma: no cover - the parser only emits the events above inside a document
                raise self.fail(line, f"bad YAML: unexpected {cls.__name__}")
            if not stack:
                return value
            self._attach(stack[-1], value, size, is_plain, line, event)

    def _attach(self, top: _Frame, value: Any, size: int, is_plain: bool, line: int, event) -> None:
        top.size += size
        if not top.is_map:
            top.value.append(value)
            top.value.item_lines.append(line)
            return
        if top.key is _NO_KEY:
            if not is_plain:
                raise self.fail(line, "a mapping key must be a plain value")
            if value is _MERGE_KEY:
                top.key, top.key_line = _MERGE_KEY, line
                return
            if isinstance(value, str) and is_secret_key(value):
                raise self.fail(line, f"{value}: {SECRET_KEY_MESSAGE}")
            if value in top.value:
                raise self.fail(line, f"duplicate key {value!r} (first at line {top.value.key_lines[value]})")
            top.key, top.key_line = value, line
            return
        if top.key is _MERGE_KEY:
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, dict) for item in items):
                raise self.fail(top.key_line, "a merge key (<<) takes a mapping or a list of mappings")
            top.merges.extend(items)
        else:
            top.value[top.key] = value
            top.value.key_lines[top.key] = top.key_line
        top.key = _NO_KEY

    @staticmethod
    def _merge(frame: _Frame) -> None:
        """YAML merge keys: keys written in the mapping win, then earlier merged mappings."""
        data = frame.value
        for source in frame.merges:
            for key, value in source.items():
                if key not in data:
                    data[key] = value
                    data.key_lines[key] = getattr(source, "key_lines", {}).get(key, data.line)

    def _scalar(self, event, line: int) -> Any:
        text = event.value
        if len(text) > MAX_SCALAR_CHARS:
            raise self.fail(line, f"a value of {len(text)} characters (limit {MAX_SCALAR_CHARS})")
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, text, event.implicit)
            if tag == _MERGE:
                return _MERGE_KEY
            if tag not in _SCALAR_TAGS or (tag in (_INT, _FLOAT) and ":" in text):
                return text  # YAML 1.1 sexagesimal (`19:00` = 1140) is never meant: it stays text
        elif tag not in _SCALAR_TAGS:
            raise self.fail(line, f"YAML tag {_short_tag(tag)} is not allowed (plain data only)")
        if tag == _STR:
            return text
        if tag == _NULL:
            if event.tag in (None, "!") or text in ("", "~", "null", "Null", "NULL"):
                return None
            raise self.fail(line, f"!!null on {text[:40]!r}, which is not null")
        if tag == _BOOL:
            if text.lower() in _BOOL_WORDS:
                return _BOOL_WORDS[text.lower()]
            raise self.fail(line, f"!!bool on {text[:40]!r}, which is not true or false")
        if tag == _INT:
            return self._int(text, line)
        return self._float(text, line)

    def _int(self, text: str, line: int) -> int:
        compact = text.strip()
        if not compact.isascii() or not _INT_TEXT.fullmatch(compact):
            raise self.fail(line, f"!!int on {text[:40]!r}, which is not an integer (ASCII digits only)")
        digits = sum(ch.isalnum() for ch in compact)
        if digits > MAX_INT_DIGITS:
            raise self.fail(line, f"an integer of {digits} digits (limit {MAX_INT_DIGITS})")
        return self.loader.construct_yaml_int(yaml.ScalarNode(_INT, compact))

    def _float(self, text: str, line: int) -> float:
        if not text.isascii() or len(text) > 64:
            raise self.fail(line, f"!!float on {text[:40]!r}, which is not a number (ASCII, at most 64 characters)")
        try:
            return float(self.loader.construct_yaml_float(yaml.ScalarNode(_FLOAT, text)))
        except (ValueError, TypeError, OverflowError):
            raise self.fail(line, f"!!float on {text[:40]!r}, which is not a number") from None


# YAML 1.2 booleans: only true/false. YAML 1.1 would read the scenario key `on:` (and yes/no/off)
# as a boolean, which is never what a scenario or inventory author means. Dates stay text
# (no timestamp resolver): `title: 2024-02-30` is a title, not an impossible date.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _Y + "timestamp")]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# YAML 1.2 also reads `1e300` (no dot) as a number; YAML 1.1 would keep it as text
_LineLoader.add_implicit_resolver(_FLOAT, re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                  list("-+0123456789"))


def load(path: str | Path, text: str | None = None) -> Any:
    """Parse one YAML document within the limits; every problem is InputError("path:line", ...)."""
    path = str(path)
    if text is None:
        text = read_text(path)
    elif len(text) > MAX_FILE_BYTES:
        raise InputError(f"{path}:1", f"file is over the {MAX_FILE_BYTES} byte limit")
    text = text.lstrip("\ufeff")
    loader = _LineLoader(text)
    loader.path = path
    try:
        return _Builder(loader).document()
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, max(err.position, 0)) + 1
        raise InputError(f"{path}:{line}", f"bad YAML: character #x{err.character:04x} is not allowed "
                                           f"(control characters and invalid code points)") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = err.problem or err.context or "bad YAML"
        context = ""
        if err.context and err.problem:
            started = f" started at line {err.context_mark.line + 1}" if err.context_mark else ""
            context = f" ({err.context}{started})"
        raise InputError(f"{path}:{line}", " ".join(f"bad YAML: {problem}{context}".split())) from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}:1", f"bad YAML: {' '.join(str(err).split())[:200]}") from None
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
    """Credentials only by reference: any key whose name suggests a secret is an error.

    yamlfile.load already checks while building; this is for data that came from elsewhere.
    """
    if getattr(data, "line", None) is not None:  # built by load(): checked already
        return
    stack = [data]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for key, value in cur.items():
                if is_secret_key(key):
                    line = cur.key_lines.get(key, 1) if isinstance(cur, LineDict) else 1
                    raise InputError(f"{path}:{line}", f"{key}: {SECRET_KEY_MESSAGE}")
                stack.append(value)
        elif isinstance(cur, list):
            stack.extend(cur)


NEITHER_MESSAGE = "neither a scenario nor an inventory file (no top-level 'scenario:' or 'inventory:' key)"


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
