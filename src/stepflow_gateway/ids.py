"""Identifier types. Plain strings at run time; ``NewType`` documents intent."""

from __future__ import annotations

import uuid
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
    """A fresh random run id."""
    return RunId(str(uuid.uuid4()))
