"""The plugin's hosts: what runs the user's engine (a ``wrapper.py``, or a C library)."""
