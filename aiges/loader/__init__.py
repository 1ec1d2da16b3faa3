"""The loader process: HTTP/WebSocket front, envelope codec, limits, metrics, plugin supervision."""
