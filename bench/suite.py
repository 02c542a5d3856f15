"""What ``python -m bench`` runs: each benchmark's flags (full and quick), and how its JSON becomes table rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

KIB = 1024.0


@dataclass(frozen=True)
class Row:
    """One line of the suite's table."""

    bench: str
    measure: str
    value: float | None
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    verdict: str = ""  # PASS, FAIL, ERROR, or "" for a figure without a target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(**d)


def verdict(ok: bool | None, quick: bool) -> str:
    """PASS/FAIL; in quick mode the figures are not comparable with the targets."""
    if ok is None:
        return "ERROR"
    if quick:
        return "smoke"
    return "PASS" if ok else "FAIL"


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def ingest_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    s = doc["summary"]
    base = s["baseline_subscriber_rate"]
    rows = [
        Row(
            "ingest",
            "baseline: fleet -> Mosquitto -> do-nothing subscriber",
            base,
            "msg/s",
            f"fleet sent {s['baseline_fleet_rate']:,.0f}/s",
        )
    ]
    names = {
        "full": "anfang run (all services)",
        "bare": "bare twins (no services)",
        "pg": "anfang run (PostgreSQL)",
        "workers2": "anfang run --workers 2 (PostgreSQL)",
    }
    for variant in ("full", "bare", "pg", "workers2"):
        if variant not in s:
            continue
        v = s[variant]
        ok = v["platform_accepted_rate"] >= 10_000 and (v["ratio_to_baseline"] or 0) >= 0.5
        rows.append(
            Row(
                "ingest",
                f"{names[variant]}: accepted reports, QoS 1, {doc['args']['duration']:.0f} s",
                v["platform_accepted_rate"],
                "msg/s",
                f"{base:,.0f}/s",
                v["ratio_to_baseline"],
                ">= 10,000/s and >= 0.5x",
                verdict(ok, quick),
            )
        )
        if v.get("platform_accepted_rate_while_sending") is not None:
            rows.append(
                Row(
                    "ingest",
                    f"{names[variant]}: accepted reports while the fleet sends (before the drain)",
                    v["platform_accepted_rate_while_sending"],
                    "msg/s",
                    f"{base:,.0f}/s",
                    v["ratio_to_baseline_while_sending"],
                )
            )
        if v.get("backlog_drain_rate") is not None:
            rows.append(
                Row(
                    "ingest",
                    f"{names[variant]}: drains a queued backlog of {v['backlog']:,.0f} reports (fleet stopped)",
                    v["backlog_drain_rate"],
                    "msg/s",
                    f"{base:,.0f}/s",
                    round(v["backlog_drain_rate"] / base, 2) if base else None,
                )
            )
            rows.append(
                Row(
                    "ingest",
                    f"{names[variant]}: CPU cores its processes use while draining the backlog",
                    v["backlog_drain_cores"],
                    "cores",
                )
            )
        if v.get("platform_cpu_us_per_report") is not None:
            rows.append(
                Row(
                    "ingest",
                    f"{names[variant]}: platform CPU per accepted report (whole phase)",
                    v["platform_cpu_us_per_report"],
                    "µs",
                )
            )
        if v.get("peak_rss_mib") is not None:
            rows.append(
                Row("ingest", f"{names[variant]}: peak RSS while the broker's backlog drains", v["peak_rss_mib"], "MiB")
            )
        p99 = v["latency_p99_ms"]
        rows.append(
            Row(
                "ingest",
                f"{names[variant]}: p99 publish->stored at {v['latency_rate']:,.0f}/s",
                p99,
                "ms",
                f"p50 {v['latency_p50_ms']} ms",
                None,
                "<= 50 ms at 5,000/s",
                verdict(None if p99 is None else p99 <= 50, quick),
            )
        )
    return rows


def access_mqtt_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    s = doc["summary"]
    ok = s["p99_ms"] is not None and s["p99_ms"] <= 20 and s["all_opens_arrived"]
    return [
        Row(
            "access",
            f"capture -> cmd/open via Mosquitto + anfang run, p99 at {s['achieved_rate']:.0f}/s",
            s["p99_ms"],
            "ms",
            f"p50 {s['p50_ms']} ms",
            None,
            "<= 20 ms at 200/s",
            verdict(ok, quick),
        )
    ]


def access_inproc_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    c = doc["capture_to_open_ms"]
    return [
        Row(
            "access",
            f"capture -> open in-process (no broker), p99 at {doc['achieved_rate_per_s']:.0f}/s",
            c["p99"],
            "ms",
            f"p50 {c['p50']} ms",
            target="reference",
        )
    ]


def memory_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    s = doc["summary"]
    n = s["twins"]
    bench = "memory" if s.get("platform", "full") == "full" else "memory (bare)"
    rows = [
        Row(
            bench,
            f"RSS per registered idle twin ({n:,} twins vs empty registry)",
            s.get("idle_bytes_per_twin"),
            "B",
            f"{s['rss_empty_mib']} -> {s['rss_registered_idle_mib']} MiB",
            None,
            "<= 2 KiB",
            verdict(None if s.get("idle_bytes_per_twin") is None else s["idle_bytes_per_twin"] <= 2 * KIB, quick),
        ),
        Row(
            bench,
            f"start to ready with {n:,} twins",
            s["start_registered_s"],
            "s",
            f"empty registry {s['start_empty_s']} s",
            round(s["start_registered_s"] / s["start_empty_s"], 2) if s["start_empty_s"] else None,
            "<= 5 s",
            verdict(s["start_registered_s"] <= 5, quick),
        ),
    ]
    if "loaded_bytes_per_twin" in s:
        label = "extrapolated" if s["rss_all_loaded_is_extrapolated"] else "measured"
        rows.append(
            Row(
                bench,
                f"RSS per cached twin ({s['loaded_devices']:,} devices reported once)",
                s["loaded_bytes_per_twin"],
                "B",
                f"{s['rss_registered_idle_mib']} -> {s['rss_loaded_mib']} MiB",
                target="(2 KiB is the idle target)",
            )
        )
        rows.append(Row(bench, f"RSS with all {n:,} twins cached ({label})", s["rss_all_loaded_mib"], "MiB"))
    return rows


def rules_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    base = doc["rows"][0]
    out = []
    for r in doc["rows"]:
        ok = r["cost_ratio_vs_10"] <= 2.0
        out.append(
            Row(
                "rules",
                f"events/s with {r['rules']:,} rules loaded",
                round(r["events_per_s"], 1),
                "ev/s",
                f"{base['events_per_s']:,.0f}/s with {base['rules']} rules",
                round(r["events_per_s"] / base["events_per_s"], 2),
                "cost <= 2x of 10 rules",
                verdict(ok, quick),
            )
        )
    return out


def telemetry_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    return [
        Row(
            "telemetry",
            f"twin updates/s with the writer at {doc['achieved_points_written_per_s']:,} points/s ({doc['sink']})",
            doc["twin_updates_per_s_with_writer"],
            "upd/s",
            f"{doc['twin_updates_per_s_baseline']:,}/s without",
            doc["ratio"],
            "slowdown <= 10%",
            verdict(doc["passes_10pct_budget"], quick),
        ),
        Row(
            "telemetry",
            "twin CPU per update, with/without writer",
            doc["twin_cpu_us_per_update_with_writer"],
            "us",
            f"{doc['twin_cpu_us_per_update_baseline']} us",
            doc["twin_cpu_ratio"],
        ),
    ]


def vision_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    face = doc["face"]["gallery_1000"]["frame"]
    plate = doc["plate"]["crop_220x70"]
    return [
        Row("vision", "face frame -> match, gallery 1,000, p99", face["p99_ms"], "ms", f"p50 {face['p50_ms']} ms"),
        Row(
            "vision",
            "plate crop 220x70 -> text, p99",
            plate["p99_ms"],
            "ms",
            f"exact {plate['exact']}/{plate['total']}",
        ),
    ]


def fleet_rows(doc: dict[str, Any], quick: bool) -> list[Row]:
    return [
        Row(
            "fleet",
            f"{doc['connected']:,}/{doc['devices']:,} simulated devices -> Mosquitto, QoS 1 (1 run)",
            doc["sustained_rate"],
            "msg/s",
            f"target {doc['target_rate']:,.0f}/s",
            round(doc["sustained_rate"] / doc["target_rate"], 2),
        )
    ]


@dataclass(frozen=True)
class Bench:
    """One benchmark module, its flags for a full and a quick run, and its rows."""

    module: str
    full: list[str]
    quick: list[str]
    rows: Callable[[dict[str, Any], bool], list[Row]]
    timeout: float = 1800
    timeout_quick: float = 300


BENCHES: dict[str, Bench] = {
    "rules": Bench("bench.rules_bench", [], ["--events", "300", "--runs", "3"], rules_rows),
    "access": Bench("bench.access_bench", ["--seconds", "10"], ["--seconds", "1"], access_inproc_rows),
    "access_mqtt": Bench(
        "bench.access_mqtt_bench",
        ["--seconds", "10", "--runs", "3"],
        ["--seconds", "2", "--runs", "1", "--warmup", "1"],
        access_mqtt_rows,
    ),
    "telemetry": Bench("bench.telemetry_bench", [], ["--seconds", "0.5", "--rounds", "2"], telemetry_rows),
    "memory": Bench(
        "bench.memory_bench",
        ["--twins", "100000", "--loaded", "10000", "--runs", "3"],
        ["--twins", "2000", "--loaded", "200", "--runs", "1"],
        memory_rows,
    ),
    "memory_bare": Bench(
        "bench.memory_bench",
        ["--twins", "100000", "--loaded", "10000", "--runs", "3", "--platform", "bare"],
        ["--twins", "2000", "--loaded", "200", "--runs", "1", "--platform", "bare"],
        memory_rows,
    ),
    "vision": Bench("bench.vision_bench", [], ["--quick"], vision_rows),
    "fleet": Bench(
        "bench.fleet_bench",
        ["--devices", "10000", "--duration", "20"],
        ["--devices", "200", "--rate", "2000", "--duration", "2"],
        fleet_rows,
    ),
    "ingest": Bench(
        "bench.ingest_bench",
        [
            "--devices",
            "1000",
            "--duration",
            "60",
            "--baseline-duration",
            "20",
            "--latency-duration",
            "20",
            "--runs",
            "3",
            "--variants",
            "full,pg,workers2",
        ],
        [
            "--devices",
            "100",
            "--duration",
            "3",
            "--baseline-duration",
            "2",
            "--latency-duration",
            "2",
            "--rate",
            "2000",
            "--baseline-rate",
            "10000",
            "--latency-rate",
            "500",
            "--backlog-duration",
            "2",
            "--runs",
            "1",
        ],
        ingest_rows,
        timeout=3600,
        timeout_quick=600,
    ),
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def format_table(rows: list[Row], *, markdown: bool = False) -> str:
    """The suite's table, plain text or GitHub markdown."""
    head = ["benchmark", "measure", "median", "baseline (same run)", "ratio", "target", "verdict"]
    body = [
        [
            r.bench,
            r.measure,
            _fmt(r.value, r.unit),
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            r.verdict,
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 4) else '<'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])
