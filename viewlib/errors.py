"""The view library's exceptions, raised at its seams (HTTP client, outbox store).

ViewLibError               anything the uploader could not do; ``where`` and ``reason`` say what
├── ServerUnreachable      no answer: connection refused, timeout, TLS, a 5xx (retry later)
├── AuthRefused            the server refused our user or password (HTTP 401 to a digest registration)
├── NotRegistered          the server no longer knows this platform (401 to a registered request)
├── ServerRejected         an answer that is not success (HTTP 4xx, a StatusCode other than 0)
└── OutboxError            the outbox table could not be read or written
"""

from __future__ import annotations

__all__ = ["AuthRefused", "NotRegistered", "OutboxError", "ServerRejected", "ServerUnreachable", "ViewLibError"]


class ViewLibError(Exception):
    """Something the view library uploader could not do.

    Attributes:
        where: the URL or table concerned.
        reason: what went wrong, in a few words.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


class ServerUnreachable(ViewLibError):
    """The server did not answer usefully (refused, timed out, 5xx); try again later."""


class AuthRefused(ViewLibError):
    """The server refused the configured user or password."""


class NotRegistered(ViewLibError):
    """The server answered 401 to a request of a registered platform: register again."""


class ServerRejected(ViewLibError):
    """The server answered, but not with success."""


class OutboxError(ViewLibError):
    """The outbox table could not be read or written."""
