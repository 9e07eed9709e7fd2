"""Free ports for the real servers and agents that tests start."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of ``kind`` (SOCK_STREAM or SOCK_DGRAM) that is free on every address, so also
    for the lab's agents, which listen on 0.0.0.0."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])
