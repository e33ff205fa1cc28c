"""Delivery: batches on an event loop, dispatch, attempts, and the slots they share."""
