"""Identifier types. Plain strings at run time; ``NewType`` documents intent."""

from __future__ import annotations

import os
from typing import NewType

RunId = NewType("RunId", str)
"""A run's UUID (string form)."""
StepId = NewType("StepId", str)
"""A step's ``id`` as written in the flow."""
FlowId = NewType("FlowId", str)
"""SHA-256 (hex) of the normalised flow."""
BlobId = NewType("BlobId", str)
"""SHA-256 (hex) of the compact JSON of a blob's data."""


def new_run_id() -> RunId:
    """A fresh random (version 4) UUID string; a third of the cost of ``str(uuid.uuid4())``."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return RunId(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
