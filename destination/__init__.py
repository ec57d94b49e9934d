"""meshlet.destination"""
