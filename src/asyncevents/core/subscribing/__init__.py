"""Subscribing: one set of subscription rules, and Python handlers as subscriptions."""
