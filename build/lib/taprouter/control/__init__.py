"""The daemon's local API: HTTP with JSON bodies on a Unix socket, its client, and /metrics."""
