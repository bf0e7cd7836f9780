"""A pydantic ValidationError as the one line a user reads: "path:line: message".

The scenario and inventory models are strict pydantic models over data loaded by
harness/yamlfile.py (which keeps every key's line); whatever pydantic reports about them, the user
gets one line naming the file, the line and the key, never pydantic's own multi-line text.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.errors import InputError
from harness.yamlfile import where


def keys_of(model: Any) -> list[str]:
    """The keys a pydantic model takes as a file spells them (the alias when there is one)."""
    return [str(f.alias or name) for name, f in model.model_fields.items()]


def _describe_pydantic_error(err: dict, model_fields: Iterable[str] | None = None) -> str:
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith("function-")]
    kind = err.get("type", "")
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        allowed = f" (allowed: {', '.join(str(f) for f in model_fields)})" if model_fields else ""
        return f"unknown key {field!r}{allowed}"
    if kind == "missing":
        return f"missing key {field!r}"
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "literal_error":
        msg = msg.replace("Input should be", "expected")
        return f"{field}: {msg}, not {_shown_input(err.get('input'))}"
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing", "bool_type", "bool_parsing",
                "string_type", "dict_type", "list_type", "model_type"):
        msg = msg.replace("Input should be", "expected")
        return f"{field}: {msg}, not {_shown_input(err.get('input'))}"
    return f"{field}: {msg}" if field and not msg.startswith(f"{field}") else msg


def _shown_input(value: Any) -> str:
    """A wrong value in a message: a short repr, never a whole list or mapping from the file."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def input_error_from_pydantic(path: str, data: Any, exc: Any, loc_prefix: tuple = (),
                              fields_for: Any = None) -> InputError:
    """The first error of a pydantic ValidationError as one "path:line: message".

    `fields_for(loc)` may return the allowed keys at a location, to list them on unknown keys.
    Whatever pydantic reports, the answer is one line: a message that cannot be described in
    detail still names the place and pydantic's own one-line reason.
    """
    err = exc.errors(include_url=False)[0]
    loc = tuple(loc_prefix) + tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
    try:
        allowed = fields_for(loc[:-1]) if fields_for and err.get("type") == "extra_forbidden" else None
        message = _describe_pydantic_error(err, allowed)
    except Exception:  # a message we failed to build must not hide the user's mistake behind a traceback
        message = f"{'.'.join(str(p) for p in loc) or 'file'}: {err.get('msg', 'invalid')}"
    return InputError(where(path, data, loc), message)
