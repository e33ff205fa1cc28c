"""Guards against hostile input, hostile receivers and leaks (issue 7)."""
