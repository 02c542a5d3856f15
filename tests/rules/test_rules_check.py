"""`anfang rules check`: every broken file is reported with file:line and a fix hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rules.cli import app
from rules.loader import load_rules
from rules.site import load_site_plan

BROKEN = Path(__file__).parent / "broken"
SITE = Path(__file__).parents[2] / "rules" / "builtin" / "tests" / "site.yaml"
BUILTIN = Path(__file__).parents[2] / "rules" / "builtin"


def _check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", *args])
    return result.exit_code, result.output


def test_every_broken_file_gets_a_line_numbered_error_and_exit_code_1() -> None:
    code, out = _check(str(BROKEN), "--site", str(SITE))
    assert code == 1
    for f in sorted(BROKEN.glob("*.yaml")):
        assert re.search(rf"{re.escape(str(f))}:\d+: ", out), f"no line-numbered error for {f.name}:\n{out}"


def test_messages_point_at_the_line_and_say_how_to_fix() -> None:
    _, out = _check(str(BROKEN), "--site", str(SITE))
    expected = {
        "unknown_field.yaml:3:": "did you mean 'description'?",
        "unknown_action_field.yaml:8:": "did you mean 'severity'?",
        "unknown_trigger.yaml:4:": "did you mean 'event'?",
        "unknown_zone.yaml:5:": "did you mean 'kindergarten'?",
        "unknown_kind.yaml:5:": "did you mean 'door_lock'?",
        "unknown_event_type.yaml:4:": "did you mean 'door_forced'?",
        "unknown_name.yaml:6:": "did you mean 'subject'?",
        "bad_expression.yaml:5:": "syntax error",
        "bad_duration.yaml:5:": "like '30s', '5m'",
        "bad_cron.yaml:4:": "bad cron expression",
        "one_bad_one_good.yaml:12:": "unclosed '{{'",
    }
    lines = out.splitlines()
    for where, hint in expected.items():
        assert any(where in line and hint in line for line in lines), f"{where} {hint!r} missing in:\n{out}"


def test_one_bad_rule_does_not_stop_the_others_from_loading() -> None:
    result = load_rules(BROKEN / "one_bad_one_good.yaml", load_site_plan(SITE))
    assert [r.id for r in result.rules] == ["good-rule"]
    assert [d.rule_id for d in result.diagnostics] == ["bad-template"]


def test_builtin_rules_are_clean() -> None:
    code, out = _check(str(BUILTIN), "--site", str(SITE))
    assert code == 0, out
    assert "OK: 11 rule(s)" in out


def test_without_a_community_file_zones_are_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no firmware_sim/communities/youzheng.yaml default here
    code, out = _check(str(BROKEN / "unknown_zone.yaml"))
    assert code == 0, out


def test_duplicate_rule_ids_across_files_are_reported(tmp_path: Path) -> None:
    body = "rules:\n  - id: same\n    when: [{event: {type: door_forced}}]\n    then: [{audit: {message: x}}]\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    code, out = _check(str(tmp_path))
    assert code == 1
    assert "b.yaml:2: [same] duplicate rule id" in out
