"""The ``type: stepflow`` plugin: StepFlow JSON-RPC component servers over stdio or HTTP."""

from .config import StepflowPluginConfig
from .plugin import StepflowPlugin

__all__ = ["StepflowPlugin", "StepflowPluginConfig"]
