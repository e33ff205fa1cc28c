"""The web console: server-rendered pages over the same App, no front-end build."""
