"""The meetings application: configuration, database, HTTP APIs, events, expiry and call control.

This is the composition root: it wires `signaling` (SIP) and `sfu` (media) together; they never import it.
"""
