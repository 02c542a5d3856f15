"""Personal data at rest: what is stored of device events, encrypted captures, retention and purge.

See docs/privacy.md for the classification of every stored field and file.
"""

from privacy.scrub import ProtectedEvent, protect_event

__all__ = ["ProtectedEvent", "protect_event"]
