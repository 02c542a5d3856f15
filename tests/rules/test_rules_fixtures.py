"""`anfang rules test`: the built-in rules' fixtures pass, and traces explain (non-)firings."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rules.cli import app
from rules.fixture import fixture_files, run_fixture

BUILTIN = Path(__file__).parents[2] / "rules" / "builtin"
FIXTURES = fixture_files(BUILTIN)


def test_every_builtin_rule_file_has_a_fixture() -> None:
    rule_files = {p.name for p in BUILTIN.glob("*.yaml")}
    assert rule_files == {p.name for p in FIXTURES}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
async def test_builtin_fixture_passes(fixture: Path) -> None:
    text = fixture.read_text(encoding="utf-8")  # noqa: ASYNC240 - tiny local file
    results = await run_fixture(fixture)
    assert results
    failures = [f"{r.name}: {m}" for r in results for m in r.failures]
    assert not failures, "\n".join(failures)
    assert "not_fired:" in text or "absent_alarms:" in text, "each fixture should show a non-firing case"


def test_cli_test_trace_explains_the_noise_case() -> None:
    result = CliRunner().invoke(
        app, ["test", str(BUILTIN / "tests" / "elderly_left_fence.yaml"), "--trace", "--rule", "elderly-left-fence"]
    )
    assert result.exit_code == 0, result.output
    assert "4 passed, 0 failed" in result.output
    assert "cancelled" in result.output and "condition stopped holding" in result.output
    assert "pending" in result.output and "fired" in result.output


def test_cli_test_reports_failures_and_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "rule.yaml").write_text(
        "rules:\n  - id: forced\n    when: [{event: {type: door_forced}}]\n"
        "    then: [{raise_alarm: {kind: door_forced}}]\n"
    )
    (tmp_path / "site.yaml").write_text((BUILTIN / "tests" / "site.yaml").read_text(encoding="utf-8"))
    (tmp_path / "fx.yaml").write_text(
        "rules: rule.yaml\nsite: site.yaml\ncases:\n"
        "  - name: expects the wrong thing\n"
        "    timeline:\n      - {at: 1, event: {device: door-b1-u1, type: door_forced, data: {}}}\n"
        "    expect:\n      not_fired: [forced]\n"
    )
    result = CliRunner().invoke(app, ["test", str(tmp_path / "fx.yaml")])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "rule forced must not fire but fired at t=1s" in result.output


def test_a_fixture_naming_an_unknown_rule_or_device_fails_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "rule.yaml").write_text(
        "rules:\n  - id: forced\n    when: [{event: {type: door_forced}}]\n"
        "    then: [{raise_alarm: {kind: door_forced}}]\n"
    )
    (tmp_path / "site.yaml").write_text((BUILTIN / "tests" / "site.yaml").read_text(encoding="utf-8"))
    (tmp_path / "fx.yaml").write_text(
        "rules: rule.yaml\nsite: site.yaml\ncases:\n"
        "  - name: misspelt\n"
        "    timeline:\n"
        "      - {at: 1, event: {device: door-b1-u9, type: door_forced, data: {}}}\n"
        "      - {at: 2, event: {device: access-control, kind: platform, type: access_decided, data: {}}}\n"
        "    expect:\n"
        "      not_fired: [forcd]\n"
        "      fired: [forced]\n"
    )
    result = CliRunner().invoke(app, ["test", str(tmp_path / "fx.yaml")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any("fx.yaml:6:" in ln and "no device 'door-b1-u9'" in ln for ln in lines), result.output
    assert any("fx.yaml:9:" in ln and "unknown rule id 'forcd'; did you mean 'forced'?" in ln for ln in lines)
    assert "access-control" not in result.output  # platform events may come from any service
