"""Decoding of camera images carried in events (JPEG/PNG bytes or base64), with a size limit."""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageDecodeError",
    "ImageError",
    "ImageTooLargeError",
    "b64_image_bytes",
    "decode_b64_image",
    "decode_image",
    "encode_jpeg",
]

#: Largest encoded image accepted from a device (2 MiB).
DEFAULT_MAX_IMAGE_BYTES = 2 * 1024 * 1024
#: Largest decoded frame side accepted (guards against decompression bombs).
MAX_PIXELS = 40_000_000

BgrImage = npt.NDArray[np.uint8]


class ImageError(ValueError):
    """An image could not be used for recognition."""


class ImageTooLargeError(ImageError):
    """The encoded image exceeds the size limit.

    Attributes:
        size: bytes received.
        limit: bytes allowed.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"image of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ImageDecodeError(ImageError):
    """The bytes are not a decodable JPEG/PNG image (or base64 of one).

    Attributes:
        reason: what went wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot decode image: {reason}")
        self.reason = reason


def decode_image(data: bytes, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> BgrImage:
    """Decode JPEG/PNG bytes into a BGR uint8 array.

    Raises:
        ImageTooLargeError: more than ``max_bytes`` bytes.
        ImageDecodeError: not an image, or an absurd pixel count.
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(len(data), max_bytes)
    if not data:
        raise ImageDecodeError("empty")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError("not a JPEG/PNG image")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageDecodeError(f"{img.shape[1]}x{img.shape[0]} pixels is too many")
    out: BgrImage = np.ascontiguousarray(img, dtype=np.uint8)
    return out


def b64_image_bytes(text: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """Encoded image bytes from a base64 string (as in ``image_jpeg_b64`` event fields).

    The size limit applies to the decoded bytes; over-long text is refused before decoding.
    """
    if len(text) > (max_bytes * 4) // 3 + 8:
        raise ImageTooLargeError((len(text) * 3) // 4, max_bytes)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"invalid base64 ({exc})") from exc
    if len(raw) > max_bytes:
        raise ImageTooLargeError(len(raw), max_bytes)
    return raw


def decode_b64_image(text: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> BgrImage:
    """Decode a base64 image string into a BGR image (see :func:`b64_image_bytes`)."""
    return decode_image(b64_image_bytes(text, max_bytes), max_bytes)


def encode_jpeg(image: BgrImage, quality: int = 90) -> bytes:
    """Encode a BGR image as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ImageDecodeError("JPEG encoding failed")
    return bytes(buf.tobytes())


_CV_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV logs only errors inside the block (OpenCV 5 warns once per model that its new graph engine
    ignores the target: noise on every CLI run). The log level is process-wide, so one lock for all."""
    with _CV_LOG_LOCK:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(old)
