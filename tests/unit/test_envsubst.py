"""Environment substitution in plugin options (config.md §5)."""

from __future__ import annotations

import pytest

from stepflow_gateway.config.envsubst import substitute, substitute_plugin_options
from stepflow_gateway.errors import ConfigError

ENV = {"HOME": "/home/u", "USER": "u", "EMPTY": "", "1X": "digit", "A_B": "ab", "PORT": "8080"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("$HOME", "/home/u"),
        ("${HOME}", "/home/u"),
        ("$HOME/.config", "/home/u/.config"),
        ("${HOME}/projects/${USER}", "/home/u/projects/u"),
        ("$A_B-x", "ab-x"),  # names stop at the first non-name character
        ("$1X", "digit"),  # a name may start with a digit
        ("${EMPTY}", ""),  # set to empty counts as set
        ("${EMPTY:-fallback}", ""),
        ("${MISSING:fallback}", "fallback"),  # upstream form
        ("${MISSING:-fallback}", "fallback"),  # documented form ([gw] difference #12)
        ("${MISSING:--x}", "-x"),  # only one '-' is the ':-' operator
        ("${MISSING:-}", ""),
        ("${MISSING:}", ""),
        ("${PORT:-1}", "8080"),
        ("http://127.0.0.1:${MISSING:-8080}/mcp", "http://127.0.0.1:8080/mcp"),
        ("${XDG:-$HOME/.config}", "/home/u/.config"),  # nested default
        ("${XDG:-${HOME}/.config}", "/home/u/.config"),
        ("${A:-${B:-${C:-deep}}}", "deep"),
        ("${HOME:-$UNSET_IS_FINE_HERE}", "/home/u"),  # the default is evaluated lazily
        (r"\$.items", "$.items"),
        (r"\\", "\\"),
        (r"\{\}\:", "{}:"),
        (r"${MISSING:-a\}b}", "a}b"),
        (r"${MISSING:-a\:b}", "a:b"),
        ("${MISSING:-a:b}", "a:b"),  # ':' inside a default is literal
        (r"C:\Users\x", r"C:\Users\x"),  # other backslashes are kept
        ("trailing \\", "trailing \\"),
        ("Bearer ${TOKEN:-none}", "Bearer none"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV, where="plugins.p.args[0]") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$MISSING", "environment variable 'MISSING' is not set"),
        ("${MISSING}", "environment variable 'MISSING' is not set"),
        ("x ${A:-$B}", "environment variable 'B' is not set"),
        ("cost: 5$", "'$' at the end"),
        ("$.items", "is not followed by a variable name"),
        ("$ x", "is not followed by a variable name"),
        ("${}", "must be followed by a variable name"),
        ("${-x}", "must be followed by a variable name"),
        ("${HOME", "unterminated"),
        ("${HOME:-abc", "unterminated"),
        ("${HOME x}", "unexpected ' '"),
        ("${HOME:-$.x}", "is not followed by a variable name"),  # syntax errors count even in unused defaults
    ],
)
def test_substitute_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        substitute(text, ENV, where="plugins.fs.args[1]")
    message = str(info.value)
    assert fragment in message
    assert "plugins.fs.args[1]" in message  # names where it happened


def test_plugin_options_only_listed_keys() -> None:
    options = {
        "transport": "stdio",
        "command": "${HOME}/bin/server",
        "args": ["--user", "$USER", 3, "\\$.items"],
        "env": {"PORT": "${PORT}", "LEVEL": "${LOG:-WARNING}", "N": 5},
        "url": "http://127.0.0.1:${PORT}",
        "headers": {"Authorization": "Bearer ${TOKEN:-none}"},
        "cwd": "${HOME}/work",
        "description": "$NOT_SUBSTITUTED",  # other keys are untouched
        "components": {"/x": {"behaviors": {"$USER": 1}}},
    }
    out = substitute_plugin_options(options, ENV, plugin="srv")
    assert out == {
        "transport": "stdio",
        "command": "/home/u/bin/server",
        "args": ["--user", "u", 3, "$.items"],
        "env": {"PORT": "8080", "LEVEL": "WARNING", "N": 5},
        "url": "http://127.0.0.1:8080",
        "headers": {"Authorization": "Bearer none"},
        "cwd": "/home/u/work",
        "description": "$NOT_SUBSTITUTED",
        "components": {"/x": {"behaviors": {"$USER": 1}}},
    }
    assert options["command"] == "${HOME}/bin/server"  # the input is not modified


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"args": ["ok", "${NOPE}"]}, "plugins.fs.args[1]"),
        ({"env": {"KEY": "$NOPE"}}, "plugins.fs.env.KEY"),
        ({"command": "$NOPE"}, "plugins.fs.command"),
        ({"headers": {"X": "${NOPE}"}}, "plugins.fs.headers.X"),
        ({"url": "http://${NOPE}"}, "plugins.fs.url"),
        ({"cwd": "$NOPE"}, "plugins.fs.cwd"),
    ],
)
def test_plugin_options_errors_name_plugin_and_path(options: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        substitute_plugin_options(options, ENV, plugin="fs")
    assert info.value.plugin == "fs"
    assert where in str(info.value)
    assert "NOPE" in str(info.value)
