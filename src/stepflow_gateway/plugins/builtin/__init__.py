"""The ``builtin`` plugin type: ``eval``, ``map``, ``iterate``, ``put_blob``, ``get_blob``,
``load_file``, ``create_messages`` and ``openai`` (builtins.md), and upstream HEAD's ``noop`` and
``sleep``. One module per builtin or small group; ``plugin`` holds the dispatch, ``schemas`` the
component info, ``_errors`` the error stacks.
"""

from typing import TYPE_CHECKING, Any

from .plugin import BuiltinPlugin

if TYPE_CHECKING:
    from .plugin import BuiltinPluginConfig
else:

    def __getattr__(name: str) -> Any:
        if name == "BuiltinPluginConfig":  # a pydantic model: built on first access
            from . import plugin

            return plugin.BuiltinPluginConfig
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BuiltinPlugin", "BuiltinPluginConfig"]
