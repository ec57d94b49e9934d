"""Fixtures for the proxy tests; `mesh` builds the real-path topology (root only)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_mesh import open_mesh  # noqa: E402


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    with open_mesh(tmp_path_factory.mktemp("mesh")) as m:
        yield m
