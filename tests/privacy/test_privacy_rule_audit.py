"""The rule audit file (``{data_dir}/rule-audit.jsonl``, location data: who a rule fired for, when) is kept
no longer than the audit log: the platform's purge drops its older lines."""

from __future__ import annotations

import json
from pathlib import Path

from community_testkit import NOW, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)

from community.records import Retention
from privacy.purge import trim_jsonl

DAY = 86400.0


def _write(path: Path, stamps: list[float]) -> None:
    lines = [json.dumps({"ts": ts, "rule": "elderly-left-fence", "subject": f"p{n}"}) for n, ts in enumerate(stamps)]
    path.write_text("\n".join([*lines, "not json"]) + "\n", encoding="utf-8")


def test_trim_drops_only_older_lines(tmp_path: Path) -> None:
    path = tmp_path / "rule-audit.jsonl"
    _write(path, [NOW - 400 * DAY, NOW - 366 * DAY, NOW - 10 * DAY, NOW])
    assert trim_jsonl(path, NOW - 365 * DAY) == 2
    kept = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["subject"] for x in kept[:-1]] == ["p2", "p3"] and kept[-1] == "not json"
    assert trim_jsonl(path, NOW - 365 * DAY) == 0
    assert trim_jsonl(tmp_path / "missing.jsonl", NOW) == 0


async def test_the_platform_purge_trims_the_rule_audit(community: Community, tmp_path: Path) -> None:
    path = tmp_path / "rule-audit.jsonl"
    _write(path, [NOW - 40 * DAY, NOW - DAY])
    counts = await community.records.purge(NOW, Retention(audit_days=30.0, jsonl_files=(path,)))
    assert counts["rule_audit_lines"] == 1
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
