"""meshlet.controller"""
