"""meshlet.e2e"""
