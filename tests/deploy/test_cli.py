"""The ``anfang`` command as a user meets it: help on every option, one-line errors, no silent gaps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testkit import free_port

ANFANG = str(Path(sys.executable).parent / "anfang")


_WALK = """
import json, typer
from anfang import cli
cli._mount_plugins()  # as main() does
found = []
def walk(command, path):
    for p in command.params:
        if p.param_type_name == "option" and not p.hidden:
            found.append([path, p.name, p.help])
    for name, sub in (getattr(command, "commands", None) or {}).items():
        walk(sub, path + " " + name)
walk(typer.main.get_command(cli.app), "anfang")
print(json.dumps(found))
"""


def test_every_option_of_every_command_has_help_text() -> None:
    # in a process of its own: the command tree as `anfang` builds it, whatever other tests did to theirs
    out = subprocess.run([sys.executable, "-c", _WALK], capture_output=True, text=True, timeout=120, check=True)
    options = json.loads(out.stdout)
    assert len(options) > 100
    missing = sorted(f"{path} --{name}" for path, name, text in options if not text)
    assert not missing, f"{len(missing)} options without help: {missing}"


def test_pushing_dashboards_to_an_unreachable_grafana_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run([ANFANG, "dashboards", "push", "--url", url, "--token", "t"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1
    assert (
        out.stderr.strip() == f"error: grafana push failed at connect: cannot reach Grafana at {url}: "
        "[Errno 111] Connection refused"
    )


def test_a_plugin_that_cannot_be_imported_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "telemetry").mkdir()
    (tmp_path / "telemetry" / "__init__.py").write_text("")
    (tmp_path / "telemetry" / "cli.py").write_text("import no_such_module_anywhere\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from anfang.cli import main; "
        "sys.argv = ['anfang', '--help']; main()"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "error: `anfang dashboards` cannot load (telemetry.cli)" in out.stderr
    assert "no_such_module_anywhere" in out.stderr and "Traceback" not in out.stderr
