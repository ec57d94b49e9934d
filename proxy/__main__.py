"""`python -m meshlet.proxy`: the data-plane proxy (configured by MESHLET_PROXY_* variables)."""
import sys

from meshlet.proxy.app import main

sys.exit(main())
