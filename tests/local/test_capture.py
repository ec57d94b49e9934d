"""Real test of `python -m meshlet.proxy.init`: the capture rules applied in a fresh netns."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest

from .meshenv import is_root

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root(), reason="needs root (netns, iptables)")]

LISTENER = r"""
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 15001)); s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    port, ip = struct.unpack("!2xH4s8x", c.getsockopt(socket.SOL_IP, 80, 16))
    body = f"{socket.inet_ntoa(ip)}:{port}".encode()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()
"""


def sh(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30, **kw)


@pytest.fixture
def netns():
    name = f"mltc-{random.randrange(16**6):06x}"
    sh("ip", "netns", "add", name).check_returncode()
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up").check_returncode()
        sh("ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1").check_returncode()
        sh("ip", "-n", name, "link", "set", "d1", "up").check_returncode()
        sh("ip", "-n", name, "addr", "add", "198.18.254.1/24", "dev", "d0").check_returncode()
        sh("ip", "-n", name, "link", "set", "d0", "up").check_returncode()
        yield name
    finally:
        for pid in sh("ip", "netns", "pids", name).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        sh("ip", "netns", "del", name)


def curl_as(netns: str, user: list[str], url: str, max_time: int = 20) -> subprocess.CompletedProcess[str]:
    """curl as another user; the connect timeout is short because a refused redirect never connects."""
    return sh("ip", "netns", "exec", netns, "setpriv", *user, "--clear-groups",
              "curl", "-s", "--connect-timeout", "1", "-m", str(max_time), url)


def test_init_installs_rules_that_redirect_outbound(netns):
    applied = sh("ip", "netns", "exec", netns, sys.executable, "-m", "meshlet.proxy.init",
                 "--exclude-outbound-ports", "5432")
    assert applied.returncode == 0, applied.stderr
    rules = sh("ip", "netns", "exec", netns, "iptables-save", "-t", "nat").stdout
    assert "-A OUTPUT -p tcp -j MESHLET_OUTPUT" in rules
    assert "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN" in rules
    assert "--dport 5432 -j RETURN" in rules

    listener = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", LISTENER],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        # an ordinary user's connection lands on the proxy port with its original destination
        got = curl_as(netns, ["--reuid", "1000", "--regid", "1000"], "http://198.18.254.9:80/")
        assert got.returncode == 0 and got.stdout == "198.18.254.9:80"
        # the proxy's group is let through (here: nobody answers, so the connect times out)
        direct = curl_as(netns, ["--reuid", "1000", "--regid", "1337"], "http://198.18.254.9:80/")
        assert direct.returncode != 0 and direct.stdout == ""
        # excluded port: not redirected either
        excluded = curl_as(netns, ["--reuid", "1000", "--regid", "1000"], "http://198.18.254.9:5432/")
        assert excluded.returncode != 0
    finally:
        listener.kill()
        listener.wait()


def test_init_rejects_bad_flags():
    out = subprocess.run([sys.executable, "-m", "meshlet.proxy.init", "--dry-run", "--exclude-outbound-ports", "x"],
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "'x'" in out.stderr
