"""``/load_file`` (builtins.md §10): read a JSON, YAML or text file relative to the working directory.

The path is joined onto the plugin's working directory without canonicalisation, so
``resolved_path`` is the joined string. The format comes from the (case-sensitive) extension unless
given. YAML goes through the gateway's own loader (flow-format.md §15), so a file parses the same
way a flow does. The file is read in a worker thread so a slow disk never blocks the event loop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio.to_thread

from ...core.result import FlowResult
from ._errors import expect_object, invalid_input, optional_str, require_str

__all__ = ["detect_format", "load_file"]

FORMATS = ("json", "yaml", "text")
_EXTENSIONS = {".json": "json", ".yml": "yaml", ".yaml": "yaml"}


def detect_format(path: str) -> str:
    """``.json`` → json, ``.yml``/``.yaml`` → yaml, anything else → text (case-sensitive)."""
    return _EXTENSIONS.get(os.path.splitext(path)[1], "text")


def _reject_constant(name: str) -> Any:
    # serde_json has no NaN/Infinity; Python's json would accept them.
    raise ValueError(f"invalid number {name!r}: NaN and Infinity are not JSON")


def _read(path: str) -> tuple[str, int]:
    with open(path, encoding="utf-8") as fh:
        size = os.fstat(fh.fileno()).st_size
        return fh.read(), size


def _parse(text: str, fmt: str) -> Any:
    if fmt == "json":
        return json.loads(text, parse_constant=_reject_constant)
    if fmt == "yaml":
        from ...yaml_loader import load_yaml

        return load_yaml(text).value
    return text


async def load_file(input: Any, working_directory: Path) -> FlowResult:
    """``{path, format?}`` → ``{data, metadata: {resolved_path, size_bytes, format}}``.

    Raises:
        ComponentError: bad input, a missing or unreadable file, or a parse error.
    """
    obj = expect_object(input)
    path = require_str(obj, "path")
    fmt = optional_str(obj, "format")
    if fmt is not None and fmt not in FORMATS:
        raise invalid_input(f"unknown variant `{fmt}`, expected one of `json`, `yaml`, `text`")
    resolved = os.path.join(os.fspath(working_directory), path)
    if fmt is None:
        fmt = detect_format(resolved)
    try:
        text, size = await anyio.to_thread.run_sync(_read, resolved)
    except FileNotFoundError:
        raise invalid_input(f"file not found: {resolved}") from None
    except UnicodeDecodeError as exc:
        raise invalid_input(f"{resolved} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise invalid_input(f"cannot read {resolved}: {exc.strerror or exc}") from None
    try:
        data = _parse(text, fmt)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the user's file, reported as such
        raise invalid_input(f"cannot parse {resolved} as {fmt}: {exc}") from None
    return FlowResult.success(
        {"data": data, "metadata": {"resolved_path": resolved, "size_bytes": size, "format": fmt}}
    )
