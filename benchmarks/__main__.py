"""``python -m benchmarks [--quick] [--only NAME] [--database URL]``.

Finds ``benchmarks/bench_*.py``, runs each module's ``run(quick)``, prints the rows as a table
and writes them, with a description of the machine, to ``benchmarks/out/latest.json``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import platform
import sqlite3
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import sqlalchemy
from rich.console import Console
from rich.table import Table

from benchmarks.harness import backend_label

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "latest.json"
PREFIX = "bench_"


def discover() -> list[str]:
    """Names of the benchmark modules (``storage`` for ``bench_storage.py``), sorted."""
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith(PREFIX))


def run_module(name: str, quick: bool, database: str | None, scale: float | None = None) -> list[dict[str, Any]]:
    module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
    kwargs: dict[str, Any] = {}
    if "database" in inspect.signature(module.run).parameters:
        kwargs["database"] = database
    elif database is not None:
        raise click.UsageError(f"benchmark {name!r} does not take --database")
    if "scale" in inspect.signature(module.run).parameters:
        kwargs["scale"] = scale
    return list(module.run(quick, **kwargs))


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="crmkit benchmarks (ratio = figure / baseline, both measured in this run)", title_justify="left")
    for header, justify in (("Benchmark", "left"), ("Figure", "right"), ("Baseline", "right"), ("Ratio", "right"), ("Unit", "left")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
        table.add_row(f"{row['module']}: {row['name']}", _number(row["figure"]), _number(row["baseline"]), ratio, row["unit"])
    return table


def notes(rows: list[dict[str, Any]]) -> str:
    return "\n".join(f"[dim]{row['module']}: {row['name']}: {row['notes']}[/]" for row in rows if row.get("notes"))


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "sqlalchemy": sqlalchemy.__version__, "sqlite": sqlite3.sqlite_version}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Smaller data sets (about a minute in all).")
@click.option("--only", "only", multiple=True, metavar="NAME", help="Run only this benchmark (e.g. storage); repeatable.")
@click.option("--database", metavar="URL", default=None,
              help="A PostgreSQL/MariaDB server to run on (a scratch database is created and dropped); default: SQLite.")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FACTOR",
              help="Data-set size relative to full for benchmarks that take it (metrics), e.g. 0.01 while developing.")
def main(quick: bool, only: tuple[str, ...], database: str | None, scale: float | None) -> None:
    """Run crmkit's benchmarks and write benchmarks/out/latest.json."""
    available = discover()
    wanted = [name.removeprefix(PREFIX) for name in only] or available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise click.UsageError(f"no benchmark {', '.join(unknown)} (available: {', '.join(available)})")
    console = Console()
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    began = time.perf_counter()
    for name in wanted:
        with console.status(f"running {name}{' (quick)' if quick else ''} on {backend_label(database)}…"):
            try:
                rows += [{"module": name, **row} for row in run_module(name, quick, database, scale)]
            except click.UsageError:
                raise
            except Exception:
                failed[name] = traceback.format_exc()
                console.print(f"[red]benchmark {name} failed:[/]\n{failed[name]}")
    console.print(render(rows))
    console.print(notes(rows))
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick, "database": backend_label(database),
              "seconds": round(time.perf_counter() - began, 1), "machine": machine(), "results": rows, "failed": failed}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT} in {report['seconds']} s")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
