"""httpbin-like sample app (`python -m meshlet.e2e.apps.httpbin`) and its manifests."""
from pathlib import Path

HTTPBIN_DIR = Path(__file__).resolve().parent
"""`meshlet up -f HTTPBIN_DIR` brings httpbin v1 and v2 up in namespace `httpbin`."""
ROUTING_DIR = HTTPBIN_DIR / "routing"
NAMESPACE = "httpbin"
