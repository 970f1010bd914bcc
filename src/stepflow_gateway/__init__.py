"""stepflow-gateway: a runtime for StepFlow flows mixing StepFlow component servers and MCP tools."""

__version__ = "0.1.0"
