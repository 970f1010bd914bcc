"""``python -m conformance_server [--http [--port N]]``."""

from conformance_server import server

server.run()
