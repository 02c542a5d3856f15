"""`anfang rules check`: every broken file is reported with file:line and a fix hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rules.cli import app
from rules.kinds import EVENT_TYPES, REPORTED_FIELDS
from rules.loader import load_rules
from rules.site import load_site_plan
from twins.kinds import SCHEMAS

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
        "refused_by_evaluator.yaml:4:": "exponent 387420489 is too big",
        "refused_by_evaluator.yaml:8:": "repeating a value 1000000 times is too long",
        "refused_by_evaluator.yaml:12:": "the method 'format' is not allowed",
        "refused_by_evaluator.yaml:16:": "division by zero",
        "bad_new_triggers.yaml:7:": "event step: unknown event type 'acces_decided'; did you mean 'access_decided'?",
        "bad_new_triggers.yaml:12:": "state trigger: unknown twin field 'dooor'; did you mean 'door'?",
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


def test_zones_are_checked_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no community file here: the configured site (the pilot) is used
    code, out = _check(str(BROKEN / "unknown_zone.yaml"))
    assert code == 1 and "did you mean 'kindergarten'?" in out, out


def test_duplicate_rule_ids_across_files_are_reported(tmp_path: Path) -> None:
    body = "rules:\n  - id: same\n    when: [{event: {type: door_forced}}]\n    then: [{audit: {message: x}}]\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    code, out = _check(str(tmp_path))
    assert code == 1
    assert "b.yaml:2: [same] duplicate rule id" in out


def test_check_without_site_uses_the_configured_community_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pilot = (Path(__file__).parents[2] / "firmware_sim" / "communities" / "youzheng.yaml").read_text(encoding="utf-8")
    (tmp_path / "other.yaml").write_text(pilot.replace("door-b1-u1", "door-x1-u1"), encoding="utf-8")
    rule = tmp_path / "rule.yaml"
    rule.write_text(
        "rules:\n  - id: forced-b1\n    when: {event: {type: door_forced, device: door-b1-u1}}\n"
        "    then: {audit: {message: forced}}\n"
    )
    # a folder that holds a community file of its own, as the repository does: it must not be used
    (tmp_path / "firmware_sim" / "communities").mkdir(parents=True)
    (tmp_path / "firmware_sim" / "communities" / "youzheng.yaml").write_text(pilot, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anfang.yaml").write_text(f"community_file: {tmp_path / 'other.yaml'}\n")
    code, out = _check(str(rule))
    assert code == 1 and "unknown device 'door-b1-u1'" in out and "did you mean 'door-x1-u1'?" in out, out
    (tmp_path / "anfang.yaml").unlink()  # now the configured site is the default pilot
    code, out = _check(str(rule))
    assert code == 0 and "against site youzheng" in out, out


def test_the_checkers_kind_catalogue_is_the_platforms() -> None:
    """``rules.kinds`` is a copy of ``twins.kinds`` (the authority): every event a device kind may send and
    every reported field is known to ``anfang rules check``, and nothing else."""
    for kind, schema in SCHEMAS.items():
        assert EVENT_TYPES[kind] == frozenset(schema.events), kind
        assert REPORTED_FIELDS[kind] == frozenset(schema.reported.model_fields), kind


def test_a_door_closed_rule_passes_the_check(tmp_path: Path) -> None:
    (tmp_path / "closed.yaml").write_text(
        "rules:\n"
        "  - id: door-closed\n"
        "    description: a door closed\n"
        "    when: [{event: {type: door_closed, kind: door_lock}}]\n"
        "    then: [{raise_alarm: {kind: closed, severity: low, message: closed}}]\n",
        encoding="utf-8",
    )
    code, out = _check(str(tmp_path), "--site", str(SITE))
    assert code == 0, out


def test_shipped_zone_rules_are_left_out_on_a_site_without_the_zone_and_a_typo_still_fails(tmp_path: Path) -> None:
    # a community without a kindergarten or fence: the shipped rules for them do not apply, which is no error
    site = tmp_path / "site.yaml"
    site.write_text("site: plain\nbuildings: [{id: b1, name: 1栋}]\n", encoding="utf-8")
    code, out = _check(str(BUILTIN), "--site", str(site))
    assert code == 0, out
    assert "not applicable here: [child-left-kindergarten] the site has no zone 'kindergarten'" in out
    assert "not applicable here: [elderly-left-fence]" in out
    loaded = load_rules(BUILTIN, load_site_plan(site))
    assert {r.id for r in loaded.rules} >= {"door-forced", "device-offline"}
    assert not {"child-left-kindergarten", "elderly-left-fence"} & {r.id for r in loaded.rules}
    # where the site has the zones they load; and a rule that is not optional names a missing zone: an error
    assert {"child-left-kindergarten", "elderly-left-fence"} <= {
        r.id for r in load_rules(BUILTIN, load_site_plan(SITE)).rules
    }
    typo = tmp_path / "mine.yaml"
    typo.write_text(
        "rules:\n  - id: mine\n    when: {zone: {zone: kindergarden, on: leave}}\n    then: [{audit: {message: x}}]\n",
        encoding="utf-8",
    )
    code, out = _check(str(typo), "--site", str(SITE))
    assert code == 1 and "did you mean 'kindergarten'?" in out
