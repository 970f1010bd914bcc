"""The StepFlow JSON-RPC protocol: message models, framing, and the :class:`~.jsonrpc.Peer`."""
