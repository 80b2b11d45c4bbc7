"""``crmkit scores``: a contact's lead score explained rule by rule, the scoring rules,
bringing stored scores up to date, and the predictive score (``train``, ``explain``).

Registered by :mod:`crmkit.builtin.scoring_plugin`; built per CLI (no commands at import).
"""

from __future__ import annotations

from typing import Any

import attrs
import click

from crmkit.cli import pass_crm
from crmkit.cli.contacts import find_contact
from crmkit.cli.output import emit, json_option, print_table, say
from crmkit.domain.values import parse_datetime
from crmkit.scoring.model import ScoreCard
from crmkit.scoring.predictions import Prediction, StoredModel
from crmkit.scoring.predictive import MIN_PER_CLASS, TOP, Training
from crmkit.serialize import to_jsonable


def _card_json(card: ScoreCard) -> dict[str, Any]:
    data = to_jsonable(card)
    for item, contribution in zip(data["contributions"], card.contributions, strict=True):
        item["kept"] = round(contribution.kept, 4)
    return data  # type: ignore[no-any-return]


def _render(card: ScoreCard) -> None:
    say(f"Contact {card.contact_id}: score {card.score:g} at {card.at:%Y-%m-%d %H:%M} UTC "
        f"(stored {card.stored_score:g}; lifecycle {card.lifecycle_stage}"
        + (f", reaches {card.promotes_to}" if card.promotes_to else "") + ")")
    decay = f"activity points halve every {card.half_life_days:g} days" if card.half_life_days else "no decay"
    print_table(f"Contributions ({decay})", card.contributions, [
        ("rule", lambda c: c.rule), ("count", lambda c: c.count), ("points", lambda c: f"{c.points:g}"),
        ("kept after decay", lambda c: f"{c.kept:.0%}"), ("adds", lambda c: f"{c.score:g}"), ("newest", lambda c: c.newest),
    ])


def _training_json(stored: StoredModel, result: Training) -> dict[str, Any]:
    coefficients = sorted(stored.model.coefficients.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return {"model_id": stored.id, "trained_at": to_jsonable(stored.trained_at), "positives": result.positives,
            "negatives": result.negatives, "holdout_size": result.holdout_size, "holdout_auc": round(result.holdout_auc, 4),
            "intercept": stored.model.intercept,
            "coefficients": [{"feature": name, "coefficient": value} for name, value in coefficients]}


def _prediction_json(prediction: Prediction) -> dict[str, Any]:
    return to_jsonable(prediction)  # type: ignore[no-any-return]


def predictive_commands(scores: click.Group) -> None:
    """``scores train`` and ``scores explain``: the predictive score."""

    @scores.command("train")
    @click.option("--min-per-class", default=MIN_PER_CLASS, show_default=True, type=click.IntRange(2),
                  help="Fewest won and fewest lost contacts to train on.")
    @click.option("--rescore", is_flag=True, help="Then store every contact's prediction with the new model "
                  "(otherwise each follows its contact's next event).")
    @json_option
    @pass_crm
    def train(crm: Any, min_per_class: int, rescore: bool, as_json: bool) -> None:
        """Train the predictive score on the won/lost history (needs crmkit[predict])."""
        stored, result = crm.predictions.train(min_per_class=min_per_class)
        data = _training_json(stored, result)
        if rescore:
            data["rescored"] = crm.predictions.rescore_all()

        def render() -> None:
            say(f"Model {stored.id} trained on {result.positives} won and {result.negatives} lost contacts; "
                f"holdout ROC AUC {result.holdout_auc:.3f} on {result.holdout_size} contacts"
                + (f"; {data['rescored']} contact(s) rescored" if rescore else ""))
            print_table("Strongest coefficients (per standard deviation; one-hot for categories)", data["coefficients"][:10],
                        [("feature", lambda c: c["feature"]), ("coefficient", lambda c: f"{c['coefficient']:+.3f}")])

        emit(as_json, data, render)

    @scores.command("explain")
    @click.argument("contact")
    @click.option("--top", default=TOP, show_default=True, type=click.IntRange(1), help="How many drivers to show.")
    @json_option
    @pass_crm
    def explain(crm: Any, contact: str, top: int, as_json: bool) -> None:
        """CONTACT's predicted probability of winning (id or e-mail) and the features that drove it."""
        prediction = crm.predictions.predict(find_contact(crm, contact).id)
        data = _prediction_json(prediction)
        data["drivers"] = data["drivers"][:top]

        def render() -> None:
            say(f"Contact {prediction.contact_id}: predicted {prediction.probability:.1%} chance of winning (model {prediction.model_id})")
            print_table("Drivers (log-odds: coefficient x scaled value)", prediction.drivers[:top], [
                ("feature", lambda d: d.feature), ("value", lambda d: d.value),
                ("coefficient", lambda d: f"{d.coefficient:+.3f}"), ("contribution", lambda d: f"{d.contribution:+.3f}"),
            ])

        emit(as_json, data, render)


def scores_group() -> click.Group:
    @click.group("scores")
    def scores() -> None:
        """Lead scores: points per activity and profile field, with decay; a predicted win probability."""

    @scores.command("show")
    @click.argument("contact")
    @click.option("--at", "at", default=None, metavar="DATETIME", help="Score as of this moment (ISO 8601; default: now).")
    @json_option
    @pass_crm
    def show(crm: Any, contact: str, at: str | None, as_json: bool) -> None:
        """CONTACT's score (id or e-mail) and every rule that contributed, with its decay."""
        found = find_contact(crm, contact)
        card = crm.scores.explain(found.id, None if at is None else parse_datetime(at, "at"))
        emit(as_json, _card_json(card), lambda: _render(card))

    @scores.command("rules")
    @json_option
    @pass_crm
    def rules(crm: Any, as_json: bool) -> None:
        """The scoring rules in force ([plugins.scoring] in crmkit.toml)."""
        settings = crm.scores.settings
        data = attrs.asdict(settings)

        def render() -> None:
            say(f"Half-life {settings.half_life_days:g} days (activities older than {settings.horizon_days:g} days ignored); "
                f"MQL at {settings.mql_threshold:g}, SQL at {settings.sql_threshold:g}"
                + ("" if settings.promote else " (promotion off)") + ("" if settings.enabled else "; scoring is off (switch it on with enabled = true)"))
            print_table("Activity points", sorted(settings.activity_points.items()),
                        [("kind", lambda r: r[0]), ("points", lambda r: f"{r[1]:+g}")])
            print_table("Field rules", settings.field_rules,
                        [("rule", lambda r: r.describe()), ("field", lambda r: r.field), ("op", lambda r: r.op),
                         ("value", lambda r: r.value), ("points", lambda r: f"{r.points:+g}")])

        emit(as_json, data, render)

    @scores.command("refresh")
    @click.argument("contact", required=False)
    @click.option("--all", "everyone", is_flag=True, help="Every contact (decay lowers scores between events).")
    @json_option
    @pass_crm
    def refresh(crm: Any, contact: str | None, everyone: bool, as_json: bool) -> None:
        """Recompute and store CONTACT's score, or --all scores."""
        if bool(contact) == everyone:
            raise click.UsageError("give a CONTACT or --all")
        if everyone:
            changed = crm.scores.refresh_all()
            emit(as_json, {"changed": changed}, lambda: say(f"{changed} score(s) changed"))
            return
        contact_id = find_contact(crm, contact).id
        crm.scores.refresh(contact_id)
        card = crm.scores.explain(contact_id)  # as stored now
        emit(as_json, _card_json(card), lambda: _render(card))

    predictive_commands(scores)
    return scores
