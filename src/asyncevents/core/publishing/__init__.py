"""Publishing: the application side of the flow (publish, transactional outbox)."""
