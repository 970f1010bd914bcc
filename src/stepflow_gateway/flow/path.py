"""Re-exports :mod:`stepflow_gateway.jsonpath` under its former name.

The path syntax moved below ``flow`` because ``yaml_loader``, ``config`` and ``plugins.router`` use it
too, and they must not import ``flow``. New code imports ``stepflow_gateway.jsonpath``.
"""

from ..jsonpath import MISSING, JsonPath, PathSyntaxError, parse_path

__all__ = ("MISSING", "JsonPath", "PathSyntaxError", "parse_path")
