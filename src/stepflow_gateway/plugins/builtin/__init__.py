"""The ``builtin`` plugin type: ``eval``, ``map``, ``iterate``, ``put_blob``, ``get_blob``,
``load_file``, ``create_messages`` and ``openai`` (builtins.md). One module per builtin or small
group; ``plugin`` holds the dispatch, ``schemas`` the component info, ``_errors`` the error stacks.
"""

from .plugin import BuiltinPlugin, BuiltinPluginConfig

__all__ = ["BuiltinPlugin", "BuiltinPluginConfig"]
