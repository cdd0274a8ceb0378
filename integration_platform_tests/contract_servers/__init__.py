"""Local servers that behave like the vendors' APIs, for the connector contract suite.

Each runs in-process on 127.0.0.1 (uvicorn in a thread, a free port) over a real SQLite file,
follows the vendor's published API shape, quirks included, and has knobs a test turns on to
inject the faults real systems produce (throttling, server errors, bad bodies, slowness).
"""
