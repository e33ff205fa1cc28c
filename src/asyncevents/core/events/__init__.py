"""Events: the catalog, name patterns, JSON Schemas and routing to named queues."""
