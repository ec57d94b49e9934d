"""End-to-end scenarios against a running mesh (pytest; see test_bookinfo.py)."""
