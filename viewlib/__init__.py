"""Uploading the site's face, vehicle and person captures to a police view library (视图库, GA/T 1400).

:mod:`viewlib.gat1400` builds the standard's objects (pure); :mod:`viewlib.store` is the durable
outbox in the registry database; :mod:`viewlib.client` speaks GA/T 1400.4 over HTTP (httpx, digest
authentication); :mod:`viewlib.uploader` ties them together as a platform handler and task.
"""

from viewlib.client import ViewLibClient
from viewlib.errors import ViewLibError
from viewlib.uploader import ViewLibUploader

__all__ = ["ViewLibClient", "ViewLibError", "ViewLibUploader"]
