"""Reading the JSON/YAML values that flags carry (inputs, variables, overrides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FlowError


def read_value(
    path: Path | None = None, json_text: str | None = None, yaml_text: str | None = None, *, what: str
) -> Any:
    """The value of exactly one of ``--X FILE`` / ``--X-json`` / ``--X-yaml``; ``None`` when none given."""
    given = [v for v in (path, json_text, yaml_text) if v is not None]
    if len(given) > 1:
        raise FlowError(f"give only one of --{what}, --{what}-json and --{what}-yaml")
    if path is not None:
        from ..yaml_loader import load_yaml_file

        return load_yaml_file(path).value
    if json_text is not None:
        try:
            return json.loads(json_text)
        except json.JSONDecodeError as exc:
            raise FlowError(f"--{what}-json is not valid JSON: {exc}") from None
    if yaml_text is not None:
        from ..yaml_loader import load_yaml

        return load_yaml(yaml_text, source=f"--{what}-yaml").value
    return None


def read_jsonl(path: Path) -> list[Any]:
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                raise FlowError(f"line {n} is blank: every line must be one JSON value", file=str(path))
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise FlowError(f"line {n} is not valid JSON: {exc.msg}", file=str(path)) from None
    return items
