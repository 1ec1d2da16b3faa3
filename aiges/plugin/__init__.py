"""The plugin process (``python -m aiges.serve``): a gRPC server that runs the user's Wrapper.

It stays small and protocol-exact so upstream's Go loader can drive it (PROTOCOL.md §2).
"""
