import sys
from pathlib import Path

# Shared process helpers live with the identity tests (tests/identity/cp_process.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "identity"))
