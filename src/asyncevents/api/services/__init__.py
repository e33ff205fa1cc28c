"""What the routes and the console share: subscription changes, tokens, idempotency, metrics."""
