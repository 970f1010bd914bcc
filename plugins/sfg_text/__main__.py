"""``python -m sfg_text [--http [--port N]]``: serve the sfg_text components."""

from sfg_text import server

server.run()
