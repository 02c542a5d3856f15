"""Fixtures of the deployment tests (implemented in installed.py, a uniquely named module)."""

from installed import installed

__all__ = ["installed"]
