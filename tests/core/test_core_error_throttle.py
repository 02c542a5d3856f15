"""Per-device rate limit on error answers (issue 20 item 5), pure: a token bucket per errors topic."""

from __future__ import annotations

from anfang.error_throttle import ErrorThrottle


def test_a_burst_then_the_rate() -> None:
    throttle = ErrorThrottle(rate=5.0, burst=3)
    assert [throttle.allow("a/errors", 100.0) for _ in range(5)] == [True, True, True, False, False]
    assert throttle.dropped == 2
    assert throttle.allow("a/errors", 100.1) is False  # half a token back
    assert throttle.allow("a/errors", 100.2) is True  # one whole token
    assert throttle.allow("a/errors", 1000.0) and throttle.allow("a/errors", 1000.0)  # refilled to the burst


def test_one_device_flooding_does_not_silence_another() -> None:
    throttle = ErrorThrottle(rate=1.0, burst=2)
    flooded = [throttle.allow("flood/errors", 5.0) for _ in range(1000)]
    assert sum(flooded) == 2
    assert throttle.allow("quiet/errors", 5.0)


def test_buckets_are_bounded() -> None:
    throttle = ErrorThrottle(rate=1.0, burst=1, max_devices=2)
    assert throttle.allow("a", 0.0) and throttle.allow("b", 0.0) and throttle.allow("c", 0.0)
    assert throttle.allow("a", 0.0)  # forgotten (least recently used), so full again
    assert not throttle.allow("c", 0.0)
