"""The predictive lead score: logistic regression trained on the CRM's own won/lost history.

Training (:func:`train`) needs scikit-learn — the optional extra ``crmkit[predict]`` — and is
imported only when called, so ``import crmkit`` works without it. The fitted pipeline (standard
scaling for numbers, one-hot for categories, ``LogisticRegression``) is exported to a plain
:class:`LinearModel`: coefficients, intercept, feature names, scaler means/scales and the
one-hot categories, stored as JSON. Scoring a contact is then a dot product in pure Python: it
needs neither scikit-learn nor unpickling, and every coefficient × scaled value is at hand to
show which features drove the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from crmkit.errors import CRMError
from crmkit.scoring.features import CATEGORICAL

INSTALL_HINT = "the predictive score needs scikit-learn: pip install 'crmkit[predict]'"
#: Fewest contacts of each class (won, lost) training accepts: below that a holdout split leaves
#: too few to measure and the coefficients are noise.
MIN_PER_CLASS = 10
HOLDOUT = 0.25
TOP = 5


class PredictiveUnavailable(CRMError):
    """scikit-learn is not installed (``crmkit[predict]``)."""


class NotEnoughHistory(CRMError):
    """Too few won or lost contacts to train on."""


class NoModel(CRMError):
    """No predictive model has been trained yet."""


@attrs.frozen(kw_only=True)
class Driver:
    """One feature's part in a score: ``contribution`` = coefficient × scaled value, in log-odds."""

    feature: str
    value: Any
    coefficient: float
    contribution: float


@attrs.frozen(kw_only=True)
class LinearModel:
    """A trained logistic regression in plain numbers (JSON round-trips it exactly)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categories: dict[str, tuple[str, ...]]
    coefficients: dict[str, float]  # per expanded feature: "deals", "source_channel=webform" …
    intercept: float

    def expanded(self, row: Mapping[str, Any]) -> list[tuple[str, Any, float]]:
        """``(expanded feature, raw value, scaled value)`` for a feature row; an unseen category
        becomes all zeros, like scikit-learn's ``handle_unknown="ignore"``."""
        out = [(name, row[name], (float(row[name]) - mean) / scale)
               for name, mean, scale in zip(self.numeric, self.means, self.scales, strict=True)]
        for name, seen in self.categories.items():
            out.extend((f"{name}={value}", row.get(name), 1.0 if row.get(name) == value else 0.0) for value in seen)
        return out

    def drivers(self, row: Mapping[str, Any]) -> list[Driver]:
        """Every feature's contribution, largest in absolute value first."""
        found = [Driver(feature=name, value=raw, coefficient=self.coefficients[name],
                        contribution=self.coefficients[name] * scaled) for name, raw, scaled in self.expanded(row)]
        return sorted(found, key=lambda d: (-abs(d.contribution), d.feature))

    def probability(self, row: Mapping[str, Any]) -> float:
        z = self.intercept + sum(d.contribution for d in self.drivers(row))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_json(self) -> dict[str, Any]:
        return {"numeric": list(self.numeric), "means": list(self.means), "scales": list(self.scales),
                "categories": {k: list(v) for k, v in self.categories.items()},
                "coefficients": dict(self.coefficients), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearModel:
        return cls(numeric=tuple(data["numeric"]), means=tuple(float(x) for x in data["means"]),
                   scales=tuple(float(x) for x in data["scales"]),
                   categories={k: tuple(v) for k, v in data["categories"].items()},
                   coefficients={k: float(v) for k, v in data["coefficients"].items()},
                   intercept=float(data["intercept"]))


@attrs.frozen(kw_only=True)
class Training:
    """What :func:`train` produced: the model and how well it did on held-out contacts."""

    model: LinearModel
    positives: int
    negatives: int
    holdout_auc: float
    holdout_size: int


def require_sklearn() -> None:
    """Raise :class:`PredictiveUnavailable` with the install hint unless scikit-learn imports."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise PredictiveUnavailable(INSTALL_HINT) from None


def _pipeline(numeric: Sequence[str], seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    width = len(numeric)  # columns by position: numbers first, then the categories (see _matrix)
    columns = ColumnTransformer([("num", StandardScaler(), list(range(width))),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), list(range(width, width + len(CATEGORICAL))))])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=1000, random_state=seed))])


def _matrix(rows: Sequence[Mapping[str, Any]], numeric: Sequence[str]) -> Any:
    import numpy as np  # comes with scikit-learn

    return np.array([[*(float(row[name]) for name in numeric), *(str(row[name]) for name in CATEGORICAL)] for row in rows],
                    dtype=object)


def train(rows: Sequence[Mapping[str, Any]], labels: Sequence[int], numeric: Sequence[str], *,
          min_per_class: int = MIN_PER_CLASS, seed: int = 0) -> Training:
    """Fit on ``rows`` (feature dicts) and ``labels`` (1 won, 0 lost).

    The holdout ROC AUC comes from a stratified split (a quarter held out); the stored model is
    then refitted on every contact, so no labelled history is thrown away.
    """
    require_sklearn()
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if min(positives, negatives) < min_per_class:
        raise NotEnoughHistory(
            f"training needs at least {min_per_class} contacts with a won deal and {min_per_class} with only lost deals; "
            f"found {positives} won and {negatives} lost")
    X, y = _matrix(rows, numeric), list(labels)
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=HOLDOUT, stratify=y, random_state=seed)
    auc = float(roc_auc_score(y_test, _pipeline(numeric, seed).fit(X_fit, y_fit).predict_proba(X_test)[:, 1]))
    fitted = _pipeline(numeric, seed).fit(X, y)
    return Training(model=export(fitted, numeric), positives=positives, negatives=negatives, holdout_auc=auc,
                    holdout_size=len(y_test))


def export(pipeline: Any, numeric: Sequence[str]) -> LinearModel:
    """The fitted scikit-learn pipeline as plain numbers."""
    columns, regression = pipeline.named_steps["columns"], pipeline.named_steps["model"]
    scaler, encoder = columns.named_transformers_["num"], columns.named_transformers_["cat"]
    categories = {name: tuple(str(v) for v in values) for name, values in zip(CATEGORICAL, encoder.categories_, strict=True)}
    names = [*numeric, *(f"{name}={value}" for name, seen in categories.items() for value in seen)]
    coefficients = [float(x) for x in regression.coef_[0]]
    if len(coefficients) != len(names):
        raise CRMError(f"the fitted model has {len(coefficients)} coefficients for {len(names)} features")
    return LinearModel(numeric=tuple(numeric), means=tuple(float(x) for x in scaler.mean_),
                       scales=tuple(float(x) for x in scaler.scale_), categories=categories,
                       coefficients=dict(zip(names, coefficients, strict=True)), intercept=float(regression.intercept_[0]))
