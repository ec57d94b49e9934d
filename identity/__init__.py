"""meshlet.identity"""
