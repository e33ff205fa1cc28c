"""Receiver protection (issue 15): limits, circuits, ordering, rotation, Ed25519, headers."""
