"""JSON paths of flow-format.md §5.2: parse once, look up fast, display normalised.

Owns the path syntax used by ``$input``, ``$step.path``, ``$variable`` and route conditions:

* ``None``, ``""`` and ``"$"`` are the whole value;
* a string that does not start with ``$`` (after trimming whitespace) is ONE literal key, so
  ``"a.b"`` is the key ``a.b``;
* a ``$`` path is a sequence of ``.name``, ``[n]`` and ``["name"]`` / ``['name']`` segments; an empty
  ``.`` segment is skipped (``$..a`` is ``$.a``); there are no wildcards, slices or negative indexes.

Display normalises to ``$`` followed by ``.name`` / ``[n]``; a key that would not read back the same
(it contains ``.``, ``[`` or ``]``, is empty, or has surrounding whitespace) is written ``["key"]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import FlowLoadError

__all__ = ("MISSING", "JsonPath", "PathSyntaxError", "parse_path")


class _Missing:
    """The type of :data:`MISSING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Returned by :meth:`JsonPath.lookup` when the path does not lead to a value."""


class PathSyntaxError(FlowLoadError):
    """A path string is not valid path syntax; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: ``str`` segments are object keys, ``int`` segments are array indexes."""

    segments: tuple[str | int, ...]

    def lookup(self, value: Any) -> Any:
        """The value at this path, or :data:`MISSING` (wrong container kind, missing key, out of range)."""
        # Hot path (every $step/$input reference): exact-class checks first, exceptions only on a miss.
        try:
            for segment in self.segments:
                if segment.__class__ is str:
                    if value.__class__ is not dict and not isinstance(value, dict):
                        return MISSING
                else:
                    if value.__class__ is not list and not isinstance(value, list):
                        return MISSING
                value = value[segment]
        except (KeyError, IndexError):
            return MISSING
        return value

    def display(self) -> str:
        """The normalised text: ``$``, ``$.a[0]``, ``$["a.b"]``."""
        out = ["$"]
        for segment in self.segments:
            if segment.__class__ is int:
                out.append(f"[{segment}]")
            elif _PLAIN_KEY.match(segment):  # type: ignore[arg-type]
                out.append("." + segment)  # type: ignore[operator]
            else:
                quote = "'" if '"' in segment else '"'  # type: ignore[operator]
                out.append(f"[{quote}{segment}{quote}]")
        return "".join(out)

    def __str__(self) -> str:
        return self.display()

    @property
    def is_root(self) -> bool:
        """True for the whole-value path ``$``."""
        return not self.segments

    def child(self, segment: str | int) -> JsonPath:
        """This path extended by one key or index."""
        return JsonPath((*self.segments, segment))


ROOT = JsonPath(())

# Keys that read back unchanged after `.`: no `.`, `[`, `]`, not empty, no edge whitespace.
_PLAIN_KEY = re.compile(r"(?!\s)[^.\[\]]+(?<!\s)\Z")
_QUOTED = re.compile(r"""\s*(["'])(.*?)\1\s*\]""", re.DOTALL)


def parse_path(text: str | None) -> JsonPath:
    """Parse a path (cached: flows reuse the same few paths).

    Raises:
        PathSyntaxError: the text is not a string or not valid ``$`` path syntax.
    """
    if text is None or text.__class__ is str:
        return _parse_cached(text)
    raise PathSyntaxError(f"expected a path string, found {type(text).__name__} {text!r}")


@lru_cache(maxsize=4096)
def _parse_cached(text: str | None) -> JsonPath:
    if not text:
        return ROOT
    body = text.strip()
    if not body.startswith("$"):
        return JsonPath((text,))  # a bare string is one literal key, kept as written
    segments: list[str | int] = []
    pos, end = 1, len(body)
    while pos < end:
        char = body[pos]
        if char == ".":
            stop = pos + 1
            while stop < end and body[stop] != "." and body[stop] != "[":
                stop += 1
            if stop > pos + 1:
                segments.append(body[pos + 1 : stop])
            pos = stop
        elif char == "[":
            pos = _bracket(text, body, pos, segments)
        else:
            raise PathSyntaxError(
                f"invalid path {text!r}: expected '.' or '[' at position {pos}, found {char!r}"
            )
    return JsonPath(tuple(segments))


def _bracket(text: str, body: str, pos: int, segments: list[str | int]) -> int:
    """Parse ``[n]``, ``["key"]`` or ``['key']`` at ``body[pos] == '['``; return the next position."""
    quoted = _QUOTED.match(body, pos + 1)
    if quoted is not None:
        segments.append(quoted.group(2))
        return quoted.end()
    close = body.find("]", pos + 1)
    if close < 0:
        raise PathSyntaxError(f"invalid path {text!r}: '[' at position {pos} is never closed with ']'")
    content = body[pos + 1 : close].strip()
    if not (content.isdigit() and content.isascii()):
        raise PathSyntaxError(
            f"invalid path {text!r}: expected a non-negative index or a quoted key inside [...], "
            f"found {content!r}"
        )
    segments.append(int(content))
    return close + 1
