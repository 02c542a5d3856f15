"""Prometheus ``/metrics`` of one platform process (the one adapter around prometheus-client).

Nothing is counted twice: at each scrape :class:`PlatformMetrics` reads the platform workers' own
counters (the ones published on ``_platform/health`` and written to ``platform_health``) and the sources
the services registered (telemetry writer, access decisions, alarms, rules, database latency), so a
scraped counter equals the platform's own count. Names are ``anfang_`` + the vocabulary's names.

    anfang_messages_received_total / _accepted_total / _duplicates_total    device messages in
    anfang_messages_rejected_total{code}                                      answered on errors topics
    anfang_messages_published_total, anfang_publish_dropped_total             MQTT messages out
    anfang_handler_errors_total, anfang_dispatch_dropped_total, anfang_commands_*_total
    anfang_inbox_depth, anfang_dispatch_depth, anfang_publish_waiting         queue depths (gauges)
    anfang_ingest_latency_ms{quantile}                                        device clock -> committed
    anfang_access_decisions_total{result,credential}, anfang_alarms_total{state,kind}
    anfang_rule_inputs_total, anfang_rule_firings_total{rule}, anfang_rules_faulted
    anfang_telemetry_*                                                         the writer (spool size ...)
    anfang_database_latency_seconds                                           SELECT 1 round trips
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry import vocabulary as v

PREFIX = "anfang_"

# platform_health counter -> (metric name without _total, help)
_COUNTERS = {
    v.H_RECEIVED: ("messages_received", "Device messages received by the platform."),
    v.H_ACCEPTED: ("messages_accepted", "Device messages applied (twin reports, events)."),
    v.H_DUPLICATES: ("messages_duplicates", "Redelivered messages recognised as already applied."),
    v.H_PUBLISHED: ("messages_published", "MQTT messages the platform published."),
    v.H_PUBLISH_DROPPED: ("publish_dropped", "Messages the platform could not publish and dropped."),
    v.H_HANDLER_ERRORS: ("handler_errors", "Errors raised by a service while handling a message."),
    v.H_DISPATCH_DROPPED: ("dispatch_dropped", "Items dropped because a service's queue was full."),
    v.H_BATCHES: ("ingest_batches", "Batches committed by the ingest loop."),
    v.H_COMMANDS_SENT: ("commands_sent", "Commands sent to devices."),
    v.H_COMMANDS_TIMED_OUT: ("commands_timed_out", "Commands no device answered in time."),
    v.H_CLOCK_SKEW_CLAMPED: ("clock_skew_clamped", "Report stamps too far ahead, clamped to the platform clock."),
    v.H_BROKER_RESUBSCRIBED: ("broker_resubscribed", "Reconnects that came back without a session."),
    v.H_ERRORS_THROTTLED: ("errors_throttled", "Error answers not sent to a device flooding bad messages."),
}
_GAUGES = {
    v.H_INBOX_DEPTH: ("inbox_depth", "Messages waiting for ingest."),
    v.H_INBOX_PEAK: ("inbox_peak", "The most messages that ever waited for ingest at once."),
    v.H_DISPATCH_DEPTH: ("dispatch_depth", "Items in the deepest service queue."),
    v.H_PUBLISH_WAITING: ("publish_waiting", "Messages waiting to be published."),
    v.H_BROKER_SUBSCRIBED: ("broker_subscribed", "1 while the broker link holds its subscriptions."),
}


class Worker(Protocol):
    """A platform worker as the metrics see it (``anfang.service.Platform``)."""

    def health(self) -> Mapping[str, Any]: ...


MetricsSource = Callable[[], Iterable[Metric]]


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter family with one sample (``name`` without the prefix and ``_total``)."""
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge family with one sample."""
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def labelled_counter(
    name: str, documentation: str, labels: Sequence[str], values: Iterable[tuple[Sequence[str], float]]
) -> CounterMetricFamily:
    """A counter family with one sample per (label values, count) pair."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=list(labels))
    for key, value in sorted(values):
        family.add_metric(list(key), value)
    return family


class PlatformMetrics(Collector):
    """Everything ``/metrics`` shows for this process; ``workers`` lists the platform workers it serves now."""

    def __init__(self, workers: Callable[[], Sequence[Worker]]) -> None:
        self._workers = workers
        self._sources: list[MetricsSource] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.database_latency = Histogram(
            PREFIX + "database_latency_seconds", "Round trip of a trivial query to the registry database.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=None,
        )  # fmt: skip

    @contextlib.contextmanager
    def source(self, source: MetricsSource) -> Iterator[None]:
        """While the context is open, ``source()`` adds its families to every scrape."""
        self._sources.append(source)
        try:
            yield
        finally:
            self._sources.remove(source)

    def collect(self) -> Iterable[Metric]:
        """Read the current counters (called by prometheus-client at each scrape)."""
        healths = [w.health() for w in self._workers()]
        for key, (name, doc) in _COUNTERS.items():
            yield counter(name, doc, sum(float(h.get(key) or 0) for h in healths))
        rejected: dict[tuple[str, ...], float] = {}
        for h in healths:
            for code, n in (h.get("rejected_by_code") or {}).items():
                rejected[(str(code),)] = rejected.get((str(code),), 0.0) + float(n)
        yield labelled_counter("messages_rejected", "Device messages rejected, by error code.", ["code"],
                               rejected.items())  # fmt: skip
        for key, (name, doc) in _GAUGES.items():
            yield gauge(name, doc, max((float(h.get(key) or 0) for h in healths), default=0.0))
        latency = GaugeMetricFamily(PREFIX + "ingest_latency_ms", "Device report timestamp to committed, over "
                                    "the last 20,000 reports.", labels=["quantile"])  # fmt: skip
        for quantile, key in (("0.5", v.H_LATENCY_P50), ("0.99", v.H_LATENCY_P99)):
            values = [float(h[key]) for h in healths if h.get(key) is not None]
            if values:
                latency.add_metric([quantile], max(values))
        yield latency
        yield gauge("workers", "Platform workers this process serves now.", len(healths))
        for source in list(self._sources):
            yield from source()
        yield from self.database_latency.collect()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def time_database(self) -> Callable[[], None]:
        """Start timing a database round trip; call the result when it has answered."""
        started = time.perf_counter()
        return lambda: self.database_latency.observe(time.perf_counter() - started)
