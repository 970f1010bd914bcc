"""``/openai`` (builtins.md §9): one OpenAI-compatible chat completion over HTTP.

Gateway behaviour (README difference #9): the model defaults to ``gpt-3.5-turbo`` and may be given;
``max_tokens`` and ``temperature`` are sent when given; the base URL is ``$OPENAI_BASE_URL`` (so
tests can use a loopback fake) or ``https://api.openai.com/v1``. The key is the input's ``api_key`` or
``$OPENAI_API_KEY``, read at call time. ``httpx2`` is imported on first use, because importing it
costs startup time that most runs never need.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import anyio

from ...core.result import FlowResult
from ...logging import get_logger
from ._errors import builtin_error, describe, expect_object, invalid_input, optional_int, optional_str

if TYPE_CHECKING:
    import httpx2

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "OpenAIClient"]

log = get_logger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-3.5-turbo"
REQUEST_TIMEOUT_S = 60.0
"""builtins.md §9: requests time out after 60 s."""

ROLES = ("system", "user", "assistant")
MISSING_KEY = 'missing value ("api_key") or environment variable ("OPENAI_API_KEY")'
GENERATING = "openai error: generating completion"
MISSING_COMPLETION = "openai error: missing completion"


def _messages(value: Any) -> list[dict[str, str]]:
    if value.__class__ is not list:
        raise invalid_input(f"invalid type: {describe(value)}, expected a sequence")
    out = []
    for m in value:
        m = expect_object(m)
        role = m.get("role")
        content = m.get("content")
        if "role" not in m:
            raise invalid_input("missing field `role`")
        if role.__class__ is not str:
            raise invalid_input(f"invalid type: {describe(role)}, expected a string")
        if role not in ROLES:
            raise invalid_input(f"unknown variant `{role}`, expected one of `system`, `user`, `assistant`")
        if "content" not in m:
            raise invalid_input("missing field `content`")
        if content.__class__ is not str:
            raise invalid_input(f"invalid type: {describe(content)}, expected a string")
        out.append({"role": role, "content": content})
    return out


def build_request(input: Any) -> tuple[str, dict[str, Any]]:
    """Check the input; return ``(api_key, body)``. Raises ``ComponentError``."""
    obj = expect_object(input)
    if "messages" not in obj:
        raise invalid_input("missing field `messages`")
    messages = _messages(obj["messages"])
    max_tokens = optional_int(obj, "max_tokens")
    temperature = obj.get("temperature")
    if temperature is not None and (temperature.__class__ not in (int, float)):
        raise invalid_input(f"invalid type: {describe(temperature)}, expected a number")
    api_key = optional_str(obj, "api_key")
    model = optional_str(obj, "model") or DEFAULT_MODEL
    if api_key is None:
        api_key = os.environ.get("OPENAI_API_KEY")
        if api_key is None:
            raise builtin_error(MISSING_KEY)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    return api_key, body


def parse_response(payload: Any) -> str:
    """``choices[0].message.content`` (``""`` when null). Raises ``ComponentError``."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise builtin_error(MISSING_COMPLETION)
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise builtin_error(GENERATING, "response choice has no 'message' object")
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise builtin_error(GENERATING, f"message content is {describe(content)}, expected a string")
    return content


class OpenAIClient:
    """Owns the (lazily created) HTTP client of the ``/openai`` builtin; closed with the plugin."""

    __slots__ = ("_client",)

    def __init__(self) -> None:
        self._client: httpx2.AsyncClient | None = None

    async def complete(self, input: Any) -> FlowResult:
        """Run one ``/openai`` call: ``{messages, ...}`` → ``{response}``."""
        api_key, body = build_request(input)
        base = (os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        url = f"{base}/chat/completions"
        import httpx2

        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=REQUEST_TIMEOUT_S)
        try:
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                resp = await self._client.post(url, json=body, headers={"Authorization": f"Bearer {api_key}"})
        except (TimeoutError, httpx2.TimeoutException):
            raise builtin_error(
                GENERATING, f"request to {url} timed out after {REQUEST_TIMEOUT_S:g} s"
            ) from None
        except httpx2.HTTPError as exc:
            raise builtin_error(GENERATING, f"request to {url} failed: {exc!s}") from None
        if resp.status_code >= 400:
            detail = resp.text[:500]
            log.warning("openai request failed", url=url, status=resp.status_code)
            raise builtin_error(GENERATING, f"HTTP {resp.status_code} from {url}: {detail}")
        try:
            payload = resp.json()
        except ValueError as exc:
            raise builtin_error(GENERATING, f"response from {url} is not JSON: {exc}") from None
        return FlowResult.success({"response": parse_response(payload)})

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(5, shield=True):
                await client.aclose()
