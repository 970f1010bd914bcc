"""sfg_text: an example StepFlow component server written with ``stepflow_gateway.sdk``.

Text utilities with pydantic-typed input and output (the schemas the gateway lists come from these
types), one component that stores its result as a blob through the runtime (``Context``), and one
that runs a nested flow. Run it with ``python -m sfg_text`` (stdio) or ``python -m sfg_text --http``
(HTTP; prints ``{"port": N}``) from the ``plugins/`` directory.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from stepflow_gateway.sdk import ComponentServer, Context

server = ComponentServer("sfg_text")


class TextInput(BaseModel):
    text: str = Field(description="The text to work on")


class TransformInput(TextInput):
    mode: str = Field("upper", pattern="^(upper|lower|title|reverse)$")


class TransformOutput(BaseModel):
    text: str
    mode: str


class StatsOutput(BaseModel):
    characters: int
    words: int
    lines: int
    top_words: list[tuple[str, int]]


class StoredText(BaseModel):
    blob_id: str
    words: int


_WORD = re.compile(r"[\w']+")


@server.component
def transform(input: TransformInput) -> TransformOutput:
    """Change the case of a text (upper, lower, title) or reverse it."""
    fn = {"upper": str.upper, "lower": str.lower, "title": str.title, "reverse": lambda s: s[::-1]}[
        input.mode
    ]
    return TransformOutput(text=fn(input.text), mode=input.mode)


@server.component
def stats(input: TextInput) -> StatsOutput:
    """Count characters, words and lines; list the three most frequent words."""
    words = [w.lower() for w in _WORD.findall(input.text)]
    return StatsOutput(
        characters=len(input.text),
        words=len(words),
        lines=input.text.count("\n") + 1 if input.text else 0,
        top_words=Counter(words).most_common(3),
    )


@server.component
async def store(input: TextInput, ctx: Context) -> StoredText:
    """Store the text as a blob in the runtime and return its id."""
    blob_id = await ctx.put_blob({"text": input.text})
    return StoredText(blob_id=blob_id, words=len(_WORD.findall(input.text)))


class LoadInput(BaseModel):
    blob_id: str


@server.component
async def load(input: LoadInput, ctx: Context) -> TextInput:
    """Read back a text stored by ``/store``."""
    data = await ctx.get_blob(input.blob_id)
    return TextInput(text=data["text"])
