"""Ports for servers started on this machine beside others: the test suite's and the
benchmarks' app instances, simulators and Redis servers."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_SHARED_PORTS = frozenset({5432, 6379})
_handed_out: set[int] = set()
_shuffled = random.SystemRandom()  # not the module's generator, which tests may seed alike


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, below the kernel's ephemeral range.

    A port the kernel hands out (``bind(0)``) can be taken again before the server binds it:
    any outgoing connection (the server's own to PostgreSQL or Redis while it starts) may get
    it as its source port, and the server then fails with "address already in use". Ports
    below the ephemeral range are never given to outgoing connections; this process does not
    hand out the same one twice, and never the machine's shared PostgreSQL and Redis ports.
    """
    low, _ = _ephemeral_range()
    first = 20000 if low > 21000 else 1024
    candidates = list(range(first, low))
    _shuffled.shuffle(candidates)
    for port in candidates:
        if port in _handed_out or port in _SHARED_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # no port below the range is free: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
