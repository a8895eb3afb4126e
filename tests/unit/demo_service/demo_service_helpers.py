"""Constants and helpers shared by the demo service tests (a unique module name: no clash with other conftests)."""

import random
import socket
from pathlib import Path

DEMO_SERVICE_DIR = Path(__file__).resolve().parents[3] / "demo_service"
API_KEY = "unit-test-key-8f3a"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# The tests' own loopback ports: clear of the slots (9001/9002) and of common dev ports.
TEST_PORTS = range(19100, 19200)


def free_port() -> int:
    """A loopback port from TEST_PORTS that nothing listens on right now."""
    for port in random.sample(TEST_PORTS, len(TEST_PORTS)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {TEST_PORTS.start}-{TEST_PORTS.stop - 1}")
