"""`python -m meshlet.e2e.apps.httpbin`: serve httpbin on HTTPBIN_PORT (default 8000)."""
from meshlet.e2e.apps.httpbin.app import main

main()
