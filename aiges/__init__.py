"""aiges: a Python model-serving engine compatible with iFlytek AIGES."""

__version__ = "0.1.0"
