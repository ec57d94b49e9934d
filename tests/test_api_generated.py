"""The committed generated code must match api/proto (run `make proto`)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "api" / "generate.py"), "--check"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_messages_round_trip() -> None:
    from meshlet.api import destination_pb as d

    update = d.Update(add=d.WeightedAddrSet(addrs=[d.WeightedAddr(addr=d.TcpAddress(ip="198.18.0.5", port=9080), weight=10000)]))
    assert d.Update.parse(bytes(update)) == update
