"""Clients of the streaming service: the browser page and a Python WebRTC client."""
