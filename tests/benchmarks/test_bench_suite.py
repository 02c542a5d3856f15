"""The benchmark suite's quick mode runs end to end and leaves valid JSON and one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _suite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def test_quick_suite_writes_results_and_summary(tmp_path: Path) -> None:
    first = _suite("--only", "rules", "--results", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    # a second invocation re-runs one benchmark and keeps the others in the same summary
    proc = _suite("--only", "access", "--merge", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True
    assert summary["machine"]["nproc"] >= 1 and summary["machine"]["python"]
    assert set(summary["benchmarks"]) == {"rules", "access"}
    for name, bench in summary["benchmarks"].items():
        assert bench["exit"] == 0, name
        json.loads((tmp_path / f"{name}.json").read_text())  # each benchmark's own result is valid JSON
    rules = summary["benchmarks"]["rules"]["rows"]
    assert [r["measure"] for r in rules] == [f"events/s with {n:,} rules loaded" for n in (10, 100, 1000)]
    assert all(r["value"] > 0 and r["ratio"] > 0 and r["verdict"] == "smoke" for r in rules)
    access = summary["benchmarks"]["access"]["rows"][0]
    assert access["unit"] == "ms" and access["value"] > 0
    # one table on stdout, with the header and a line per row
    assert "baseline (same run)" in proc.stdout and "events/s with 1,000 rules loaded" in proc.stdout
    assert "capture -> open in-process" in proc.stdout
    assert "| benchmark |" in (tmp_path / "summary.md").read_text()


def test_a_failing_benchmark_is_reported_not_hidden(tmp_path: Path) -> None:
    # an unknown flag makes the benchmark process exit before writing results
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bench.__main__ import main; from bench.suite import BENCHES;"
            "BENCHES['rules'].quick.append('--no-such-flag'); sys.exit(main(['--quick', '--only', 'rules',"
            f"'--results', {str(tmp_path)!r}]))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    row = summary["benchmarks"]["rules"]["rows"][0]
    assert row["verdict"] == "ERROR" and "ERROR" in proc.stdout
