"""The predictive lead score against real databases: a logistic regression trained on a
synthetic won/lost history where meetings before the close drive winning learns a positive
coefficient for them and ranks held-out contacts well (ROC AUC > 0.8); the explanation lists
the driving feature first; events update the stored prediction with the stored model; too
little history is refused naming the counts; the model round-trips through JSON; and without
scikit-learn the command says how to install it instead of a traceback."""

from __future__ import annotations

import builtins
import json
import random
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit.config import Config
from crmkit.domain.values import utcnow
from crmkit.scoring.predictive import INSTALL_HINT, LinearModel, NotEnoughHistory, train

STAGES = [("New", 0.1), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]
pytest.importorskip("sklearn", reason="the predictive score's tests need scikit-learn (crmkit[predict])")


@pytest.fixture
def scored(crm_factory: Any, tmp_path: Path) -> Any:
    """``scored(url=None)`` opens a CRM with scoring switched on and a Sales pipeline."""
    def open_(url: str | None = None) -> Any:
        config = Config(database_url=url or f"sqlite:///{tmp_path / 'predictive.db'}", plugin_sections={"scoring": {"enabled": True}})
        crm = crm_factory(config)
        crm.pipelines.create("Sales", STAGES)
        return crm

    return open_


def history(crm: Any, won: int, lost: int, seed: int = 7) -> list[Any]:
    """Contacts with one closed deal each, 60 days ago. Won contacts had 3–6 meetings before the
    close, lost ones 0–3 (the overlap keeps it a prediction, not a lookup); e-mail opens are
    noise. After each win come purchases — outcome, not cause: they must not be learnt."""
    rng = random.Random(seed)
    now = utcnow()
    closed_at = now - timedelta(days=60)
    contacts = []
    for index, outcome in enumerate(["won"] * won + ["lost"] * lost):
        contact = crm.contacts.create({"email": f"p{index}@example{index % 3}.com", "source": {"channel": rng.choice(["webform", "referral"])}})
        meetings = rng.randint(3, 6) if outcome == "won" else rng.randint(0, 3)
        for n in range(meetings):
            crm.activities.log({"kind": "meeting", "contact_id": contact.id, "occurred_at": (closed_at - timedelta(days=5 + n)).isoformat()})
        for n in range(rng.randint(0, 3)):
            crm.activities.log({"kind": "email.opened", "contact_id": contact.id, "occurred_at": (closed_at - timedelta(days=2 + n)).isoformat()})
        deal = crm.deals.create({"title": f"Deal {index}", "pipeline": "Sales", "contact_id": contact.id,
                                 "created_at": (closed_at - timedelta(days=30)).isoformat()})
        crm.deals.move(deal.id, "Won" if outcome == "won" else "Lost", at=closed_at)
        if outcome == "won":
            for n in range(3):
                crm.activities.log({"kind": "purchase", "contact_id": contact.id, "occurred_at": (closed_at + timedelta(days=1 + n)).isoformat()})
        contacts.append(contact)
    return contacts


def stored_rows(crm: Any, table: str) -> list[Any]:
    with crm.backend.engine.connect() as connection:
        return list(connection.execute(sa.select(crm.backend.metadata.tables[table])))


def test_learns_the_driving_feature_and_explains_with_it_first_on_every_backend(scored, database_url):
    crm = scored(database_url)
    history(crm, won=30, lost=30)
    stored, result = crm.predictions.train()

    assert (result.positives, result.negatives) == (30, 30)
    assert result.holdout_auc > 0.8, result.holdout_auc
    coefficients = stored.model.coefficients
    assert coefficients["activities.meeting"] > 0.5
    assert max(coefficients, key=lambda name: abs(coefficients[name])) == "activities.meeting"
    assert coefficients["activities.purchase"] == 0  # only after the close: never seen by training

    # The model is stored as JSON, with its training facts.
    (row,) = stored_rows(crm, "scoring_models")
    assert (row.id, row.positives, row.negatives) == (stored.id, 30, 30)
    assert row.holdout_auc == pytest.approx(result.holdout_auc)
    assert LinearModel.from_json(row.model) == stored.model

    keen = crm.contacts.create({"email": "keen@acme.io"})
    for n in range(5):
        crm.activities.log({"kind": "meeting", "contact_id": keen.id, "occurred_at": (utcnow() - timedelta(days=n + 1)).isoformat()})
    cold = crm.contacts.create({"email": "cold@gmail.com"})
    keen_p, cold_p = crm.predictions.predict(keen.id), crm.predictions.predict(cold.id)
    assert keen_p.drivers[0].feature == "activities.meeting" and keen_p.drivers[0].value == 5
    assert keen_p.drivers[0].contribution > 0
    assert keen_p.probability > 0.8 > 0.2 > cold_p.probability
    contributions = [abs(d.contribution) for d in keen_p.drivers]
    assert contributions == sorted(contributions, reverse=True)


def test_events_update_the_stored_prediction_with_the_stored_model(scored, database_url):
    crm = scored(database_url)
    history(crm, won=20, lost=20)
    stored, _ = crm.predictions.train()
    models_before = len(stored_rows(crm, "scoring_models"))

    contact = crm.contacts.create({"email": "new@acme.io"})
    first = crm.predictions.stored(contact.id)
    assert first is not None and first["model_id"] == stored.id  # contact.created scored it
    for _ in range(5):  # well above the history's average: the strongest driver
        crm.activities.log({"kind": "meeting", "contact_id": contact.id})
    after = crm.predictions.stored(contact.id)
    assert after["probability"] > first["probability"]
    assert after["probability"] == pytest.approx(crm.predictions.predict(contact.id).probability)
    assert (after["drivers"][0]["feature"], after["drivers"][0]["value"]) == ("activities.meeting", 5)
    assert len(stored_rows(crm, "scoring_models")) == models_before  # no retraining per event

    # A deal event finds the contact through the deal; deleting the contact drops its row.
    # Deal events: deal.created names the contact, deal.stage_changed is traced through the deal.
    deal = crm.deals.create({"title": "Big", "pipeline": "Sales", "contact_id": contact.id})
    with_deal = crm.predictions.stored(contact.id)
    assert with_deal["scored_at"] > after["scored_at"]
    assert with_deal["probability"] == pytest.approx(crm.predictions.predict(contact.id).probability)
    crm.deals.move(deal.id, "Won")
    assert crm.predictions.stored(contact.id)["scored_at"] > with_deal["scored_at"]
    crm.deals.delete(deal.id)
    crm.contacts.delete(contact.id)
    assert crm.predictions.stored(contact.id) is None


def test_the_prediction_is_in_the_export_and_gone_with_an_erasure(scored):
    crm = scored()
    history(crm, won=10, lost=10)
    crm.predictions.train()
    contact = crm.contacts.create({"email": "ada@acme.io"})
    crm.activities.log({"kind": "meeting", "contact_id": contact.id})
    exported = crm.privacy.export(contact.id)
    assert exported["predicted_score"]["probability"] == pytest.approx(crm.predictions.predict(contact.id).probability)
    crm.privacy.erase(contact.id)
    assert crm.predictions.stored(contact.id) is None


def test_events_write_nothing_until_a_model_is_trained(scored):
    crm = scored()
    contact = crm.contacts.create({"email": "a@acme.io"})
    crm.activities.log({"kind": "meeting", "contact_id": contact.id})
    assert stored_rows(crm, "predicted_scores") == []


def test_too_little_history_is_refused_naming_the_counts(scored, cli):
    crm = scored()
    history(crm, won=12, lost=4)
    with pytest.raises(NotEnoughHistory, match="at least 10 contacts with a won deal and 10 with only lost deals; found 12 won and 4 lost"):
        crm.predictions.train()
    assert stored_rows(crm, "scoring_models") == []
    with pytest.raises(NotEnoughHistory, match="at least 5 .* found 0 won and 0 lost"):
        train([], [], ["deals"], min_per_class=5)


def test_the_model_round_trips_through_json_and_scores_like_scikit_learn():
    rng = random.Random(3)
    rows = [{"deals": float(rng.randint(0, 4)), "source_channel": rng.choice(["a", "b", "c"])} for _ in range(80)]
    labels = [int(r["deals"] + (r["source_channel"] == "a") + rng.random() > 2.5) for r in rows]
    result = train(rows, labels, ["deals"])
    again = LinearModel.from_json(json.loads(json.dumps(result.model.to_json())))
    assert again == result.model

    from sklearn.linear_model import LogisticRegression  # the same fit, by hand, as a check on export
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = StandardScaler().fit_transform([[r["deals"]] for r in rows])
    onehot = OneHotEncoder().fit_transform([[r["source_channel"]] for r in rows]).toarray()
    import numpy as np

    expected = LogisticRegression(max_iter=1000, random_state=0).fit(np.hstack([numbers, onehot]), labels)
    probabilities = expected.predict_proba(np.hstack([numbers, onehot]))[:, 1]
    assert [again.probability(r) for r in rows] == pytest.approx(list(probabilities), abs=1e-6)
    unseen = again.probability({"deals": 1.0, "source_channel": "never seen"})  # ignored, like handle_unknown="ignore"
    assert 0 < unseen < 1


def test_cli_trains_and_explains(scored, tmp_path):
    from crmkit.testing import CliRunner

    crm = scored()
    history(crm, won=15, lost=15)
    contact = crm.contacts.create({"email": "lead@acme.io"})
    crm.activities.log({"kind": "meeting", "contact_id": contact.id})
    cli = CliRunner(crm.config.database_url)

    assert crm.predictions.stored(contact.id) is None  # no model yet when it was logged
    trained = cli.json("scores", "train", "--rescore")
    assert (trained["positives"], trained["negatives"], trained["rescored"]) == (15, 15, 31)
    assert crm.predictions.stored(contact.id)["model_id"] == trained["model_id"]
    assert trained["holdout_auc"] > 0.8 and trained["coefficients"][0]["feature"] == "activities.meeting"
    explained = cli.json("scores", "explain", "lead@acme.io")
    assert 0 < explained["probability"] < 1 and explained["contact_id"] == contact.id
    assert explained["drivers"][0]["feature"] == "activities.meeting" and len(explained["drivers"]) == 5
    text = cli("scores", "explain", contact.id)
    assert text.exit_code == 0 and "chance of winning" in text.output and "activities.meeting" in text.output
    text = cli("scores", "train")
    assert text.exit_code == 0 and "trained on 15 won and 15 lost contacts; holdout ROC AUC" in text.output
    assert "activities.meeting" in text.output


def test_explain_before_training_and_train_without_scikit_learn_fail_with_a_message(scored, monkeypatch):
    from crmkit.testing import CliRunner

    crm = scored()
    history(crm, won=10, lost=10)
    contact = crm.contacts.create({"email": "lead@acme.io"})
    cli = CliRunner(crm.config.database_url)
    result = cli("scores", "explain", contact.id)
    assert result.exit_code == 1 and "no predictive model yet" in result.output
    crm.predictions.train()

    real_import = builtins.__import__

    def no_sklearn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    result = cli("scores", "train")
    assert result.exit_code == 1 and INSTALL_HINT in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # A trained model scores and explains without scikit-learn: it is plain JSON numbers.
    assert cli("scores", "explain", contact.id).exit_code == 0
    crm.activities.log({"kind": "meeting", "contact_id": contact.id})
    assert crm.predictions.stored(contact.id) is not None


def test_crmkit_imports_and_opens_without_scikit_learn(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["sklearn"] = None  # import sklearn now raises ImportError
        import crmkit
        from crmkit.cli import build_cli
        from crmkit.scoring.predictive import PredictiveUnavailable, require_sklearn
        build_cli()
        crm = crmkit.open("sqlite:///{tmp_path / 'plain.db'}", migrate=True)
        try:
            require_sklearn()
        except PredictiveUnavailable as exc:
            print(exc)
        crm.close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == INSTALL_HINT
