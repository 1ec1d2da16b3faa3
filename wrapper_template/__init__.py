"""The project `aiges create` writes (this file excepted): ``{{name}}``-style placeholders are filled in."""
