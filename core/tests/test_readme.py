"""Every example in the repository's README.md runs, and prints what its comments say.

- The Python API block runs against a SQLite database in a temporary directory; each
  ``print(...)  # expected`` line must print exactly ``expected``.
- The plugin module is loaded as a module and registered: it must react to a won deal.
- The entry-point snippet must be valid TOML naming that module.
- The command-line block runs line by line through the real ``crmkit`` CLI in a temporary
  directory, with ``CONTACT_ID`` / ``DEAL_ID`` taken from the JSON the ``add`` commands print.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import tomllib
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from crmkit.cli import build_cli

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s(?P<expected>.+)$")


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


@pytest.fixture
def clean_environment(tmp_path, monkeypatch):
    """Run in an empty directory, with no configuration leaking in from the environment."""
    for name in ("CRMKIT_DATABASE_URL", "CRMKIT_CONFIG", "CRMKIT_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_the_examples_this_test_runs():
    python, sh, toml = blocks("python"), blocks("sh"), blocks("toml")
    assert len(python) == 2 and len(toml) == 1
    assert [line.split("#")[0].strip() for line in sh[0].splitlines()] == ["make demo", "make test"]
    assert any(line.startswith("crmkit ") for line in sh[1].splitlines())


def test_python_api_example_prints_what_its_comments_say(clean_environment):
    api = blocks("python")[0]
    expected = [m.group("expected") for m in map(EXPECTED.match, api.splitlines()) if m]
    assert len(expected) >= 5
    output = io.StringIO()
    namespace: dict[str, object] = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(output):
        exec(compile(api, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    assert output.getvalue().splitlines() == expected
    assert (clean_environment / "crm.db").is_file()


def test_plugin_example_reacts_to_a_won_deal(crm_factory, capsys):
    module = types.ModuleType("my_crm_plugin")
    exec(compile(blocks("python")[1], "my_crm_plugin.py", "exec"), module.__dict__)  # noqa: S102
    crm = crm_factory(plugins=[module])
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    deal = crm.deals.create({"title": "T", "pipeline": "Sales", "amount": "250"})
    crm.deals.move(deal.id, "Won")
    assert capsys.readouterr().out == f"deal {deal.id} won (250)\n"

    entry_points = tomllib.loads(blocks("toml")[0])["project"]["entry-points"]["crmkit"]
    assert list(entry_points.values()) == ["my_crm_plugin"]


def test_command_line_example_runs(clean_environment):
    runner = CliRunner()
    ids: dict[str, str] = {}
    outputs = []
    lines = [line for line in blocks("sh")[1].splitlines() if line.startswith("crmkit ")]
    for line in lines:
        args = [ids.get(arg, arg) for arg in shlex.split(line)[1:]]
        result = runner.invoke(build_cli(), args, catch_exceptions=False)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        outputs.append(result.stdout)
        if args[1:2] == ["add"] and "--json" in args and args[0] in ("contacts", "deals"):
            ids[f"{args[0][:-1].upper()}_ID"] = json.loads(result.stdout)["id"]
    assert set(ids) == {"CONTACT_ID", "DEAL_ID"}
    assert (clean_environment / "crmkit.toml").is_file()
    history = json.loads(outputs[lines.index("crmkit deals history DEAL_ID --json")])
    assert [change["to"] for change in history] == ["Lead", "Proposal"]
