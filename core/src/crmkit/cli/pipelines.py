"""``crmkit pipelines``: sales pipelines and their stages."""

from __future__ import annotations

from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_table
from crmkit.cli.records import report
from crmkit.domain import Outcome

OUTCOMES = tuple(o.value for o in Outcome)


class StageSpec(click.ParamType):
    """``NAME:PROBABILITY[:won|lost]`` → ``(name, probability, outcome)``.

    Only the shape is checked here (a malformed spec is a usage error); whether the probability
    is between 0 and 1 and names are unique is the domain's rule (``build_pipeline``).
    """

    name = "stage"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, float, str]:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(":")
        outcome = Outcome.OPEN.value
        if len(parts) >= 3 and parts[-1].strip().lower() in OUTCOMES:
            outcome = parts.pop().strip().lower()
        shape = "expected NAME:PROBABILITY[:won|lost], e.g. Proposal:0.5 or Won:1:won"
        if len(parts) < 2:
            self.fail(f"{value!r}: {shape}", param, ctx)
        name, probability = ":".join(parts[:-1]).strip(), parts[-1].strip()
        if not name:
            self.fail(f"{value!r}: the stage name is empty; {shape}", param, ctx)
        try:
            return name, float(probability), outcome
        except ValueError:
            self.fail(f"{value!r}: {probability!r} is not a probability (a number from 0 to 1); {shape}", param, ctx)


def describe_stages(pipeline: Any) -> str:
    labels = []
    for stage in pipeline.stages:
        outcome = "" if stage.outcome == Outcome.OPEN else f", {stage.outcome.value}"
        labels.append(f"{stage.name} ({stage.probability:.0%}{outcome})")
    return " → ".join(labels)


def pipelines_group() -> click.Group:
    @click.group("pipelines")
    def pipelines() -> None:
        """Sales pipelines: add, list, show."""

    @pipelines.command("add")
    @click.argument("name")
    @click.option("--stage", "stages", type=StageSpec(), multiple=True, required=True, metavar="NAME:PROBABILITY[:won|lost]",
                  help="A stage, in order (repeat); e.g. --stage Lead:0.1 --stage Won:1:won --stage Lost:0:lost.")
    @json_option
    @pass_crm
    def add(crm: Any, name: str, stages: tuple[tuple[str, float, str], ...], as_json: bool) -> None:
        """Create the pipeline NAME with its stages."""
        pipeline = crm.pipelines.create(name, list(stages))
        report(as_json, pipeline, f"Pipeline created: {pipeline.name} ({pipeline.id}): {describe_stages(pipeline)}")

    @pipelines.command("list")
    @json_option
    @pass_crm
    def list_(crm: Any, as_json: bool) -> None:
        """List pipelines with their stages."""
        rows = crm.pipelines.list()
        emit(as_json, rows, lambda: print_table("Pipelines", rows, (("id", lambda p: p.id), ("name", lambda p: p.name),
                                                                    ("stages", describe_stages))))

    @pipelines.command("show")
    @click.argument("name_or_id", metavar="PIPELINE")
    @json_option
    @pass_crm
    def show(crm: Any, name_or_id: str, as_json: bool) -> None:
        """Show one pipeline (by name or id) and its stages."""
        pipeline = crm.pipelines.get(name_or_id)
        emit(as_json, pipeline, lambda: print_table(f"Pipeline {pipeline.name} ({pipeline.id})", pipeline.stages, (
            ("id", lambda s: s.id), ("stage", lambda s: s.name), ("probability", lambda s: f"{s.probability:.0%}"),
            ("outcome", lambda s: s.outcome.value))))

    return pipelines
