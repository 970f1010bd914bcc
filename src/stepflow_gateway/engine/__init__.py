"""The execution engine: plans built once per flow, one coordinator loop per run."""
