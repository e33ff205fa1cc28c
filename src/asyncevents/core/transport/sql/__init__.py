"""The leased SQL queue: the kombu transport, its channel, table and wake-ups."""
