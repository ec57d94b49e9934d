"""meshlet.injector"""
