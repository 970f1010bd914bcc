"""Environment substitution in plugin options (config.md §5).

Owns the ``$NAME`` / ``${NAME}`` / ``${NAME:default}`` / ``${NAME:-default}`` syntax, its escapes
(``\\$ \\\\ \\{ \\} \\:``) and the choice of which plugin keys are substituted.

* ``NAME`` is ``[A-Za-z0-9_]+`` (it may start with a digit).
* ``${NAME:default}`` is upstream's default syntax; ``${NAME:-default}`` is the documented one
  (upstream would yield ``-default``; the gateway strips the ``-``).
* A default may itself contain substitutions and is only evaluated when the variable is unset, so
  ``${XDG_CONFIG_HOME:-$HOME/.config}`` needs ``HOME`` only when ``XDG_CONFIG_HOME`` is unset.
  The whole text is still parsed first, so a syntax error is reported even in an unused default.
* A variable that is set to the empty string counts as set.
* A backslash before any other character is kept as is (so Windows paths survive).

Substitution happens when a plugin starts, from the gateway's process environment; errors are
``ConfigError`` naming the plugin and the option's path (``plugins.fs.args[0]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["SUBSTITUTED_KEYS", "substitute", "substitute_plugin_options"]

SUBSTITUTED_KEYS = ("command", "args", "env", "url", "headers", "cwd")
"""Plugin option keys that get substitution: upstream does ``args`` items and ``env`` values; the
gateway adds ``command``, ``url``, ``headers`` values and ``cwd`` (config.md §2.1)."""

_ESCAPABLE = frozenset("$\\{}:")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    default: tuple[str | _Var, ...] | None  # None: no default given


class _Parser:
    """Recursive-descent parser of one string into literal text and variable references."""

    __slots__ = ("text", "pos", "where")

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.pos = 0
        self.where = where

    def error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: {what} in {self.text!r}")

    def parse(self, *, in_default: bool) -> tuple[str | _Var, ...]:
        text = self.text
        n = len(text)
        parts: list[str | _Var] = []
        buf: list[str] = []
        while self.pos < n:
            ch = text[self.pos]
            if ch == "\\":
                nxt = text[self.pos + 1] if self.pos + 1 < n else ""
                if nxt in _ESCAPABLE and nxt:
                    buf.append(nxt)
                    self.pos += 2
                else:
                    buf.append(ch)
                    self.pos += 1
            elif ch == "$":
                if buf:
                    parts.append("".join(buf))
                    buf.clear()
                parts.append(self.parse_var())
            elif ch == "}" and in_default:
                break  # the caller consumes the closing brace
            else:
                buf.append(ch)
                self.pos += 1
        if buf:
            parts.append("".join(buf))
        return tuple(parts)

    def parse_name(self) -> str:
        text = self.text
        start = self.pos
        while self.pos < len(text) and text[self.pos] in _NAME_CHARS:
            self.pos += 1
        return text[start : self.pos]

    def parse_var(self) -> _Var:
        text = self.text
        self.pos += 1  # the '$'
        if self.pos >= len(text):
            raise self.error(
                "'$' at the end is not followed by a variable name (write '\\$' for a literal '$')"
            )
        if text[self.pos] != "{":
            name = self.parse_name()
            if not name:
                raise self.error(
                    f"'$' at offset {self.pos - 1} is not followed by a variable name or '{{' "
                    "(write '\\$' for a literal '$')"
                )
            return _Var(name, None)
        open_at = self.pos - 1
        self.pos += 1  # the '{'
        name = self.parse_name()
        if not name:
            raise self.error(f"'${{' at offset {open_at} must be followed by a variable name [A-Za-z0-9_]+")
        if self.pos >= len(text):
            raise self.error(f"unterminated '${{' at offset {open_at} (missing '}}')")
        ch = text[self.pos]
        if ch == "}":
            self.pos += 1
            return _Var(name, None)
        if ch != ":":
            raise self.error(
                f"unexpected {ch!r} after '${{{name}' at offset {self.pos} (expected '}}' or ':default')"
            )
        self.pos += 1
        if self.pos < len(text) and text[self.pos] == "-":
            self.pos += 1  # documented ':-' form; upstream would keep the '-' (config.md §5)
        default = self.parse(in_default=True)
        if self.pos >= len(text):
            raise self.error(f"unterminated '${{' at offset {open_at} (missing '}}')")
        self.pos += 1  # the closing '}'
        return _Var(name, default)


def _render(parts: tuple[str | _Var, ...], environ: Mapping[str, str], where: str, text: str) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = environ.get(part.name)
        if value is not None:
            out.append(value)
        elif part.default is not None:
            out.append(_render(part.default, environ, where, text))
        else:
            raise ConfigError(
                f"{where}: environment variable '{part.name}' is not set (in {text!r}); "
                f"set it or give a default with '${{{part.name}:-default}}'"
            )
    return "".join(out)


def substitute(text: str, environ: Mapping[str, str], *, where: str) -> str:
    """Expand environment references in ``text``.

    Raises:
        ConfigError: bad syntax or an unset variable without a default; the message names ``where``.
    """
    if "$" not in text and "\\" not in text:
        return text  # fast path: nothing to do
    parser = _Parser(text, where)
    parts = parser.parse(in_default=False)
    return _render(parts, environ, where, text)


def _sub_value(value: Any, environ: Mapping[str, str], where: str) -> Any:
    # Only strings are substituted; numbers and booleans in env/args stay as the plugin's config
    # model will coerce them.
    if isinstance(value, str):
        return substitute(value, environ, where=where)
    return value


def substitute_plugin_options(
    options: dict[str, Any], environ: Mapping[str, str], *, plugin: str
) -> dict[str, Any]:
    """Return a copy of a plugin's options with ``command``, ``args`` items, ``env`` values, ``url``,
    ``headers`` values and ``cwd`` substituted. Other keys are returned untouched.

    Raises:
        ConfigError: naming the plugin and the option path, e.g. ``plugins.fs.args[0]``.
    """
    out = dict(options)
    base = f"plugins.{plugin}"
    try:
        for key in ("command", "url", "cwd"):
            if key in out:
                out[key] = _sub_value(out[key], environ, f"{base}.{key}")
        args = out.get("args")
        if isinstance(args, list):
            out["args"] = [_sub_value(a, environ, f"{base}.args[{i}]") for i, a in enumerate(args)]
        for key in ("env", "headers"):
            mapping = out.get(key)
            if isinstance(mapping, dict):
                out[key] = {k: _sub_value(v, environ, f"{base}.{key}.{k}") for k, v in mapping.items()}
    except ConfigError as exc:
        raise ConfigError(exc.message, plugin=plugin) from None
    return out
