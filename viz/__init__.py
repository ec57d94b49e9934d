"""meshlet.viz"""
