"""The project `aiges create --lang c` writes (installed as aiges.c_template)."""
