"""Lead scoring: rule-based points per activity kind and per profile field, with time decay,
lifecycle promotion at thresholds, updated from events and explained rule by rule.

* :mod:`.settings` — ``[plugins.scoring]``;
* :mod:`.model` — the score as a pure function of a contact, its activities and a moment;
* :mod:`.service` — ``crm.scores`` and the event handling.

The predictive score — the probability a contact wins, learnt from the CRM's won/lost history:

* :mod:`.features` — each contact's features as of a moment, read with grouped SQL queries;
* :mod:`.predictive` — training (scikit-learn, the ``crmkit[predict]`` extra) and the model as
  plain JSON numbers, scored and explained without scikit-learn;
* :mod:`.predictions` — ``crm.predictions``: train, store, predict, and rescore from events;
* :mod:`.tables` — its tables (Alembic branch ``crmkit_scoring``).

The built-in plugin :mod:`crmkit.builtin.scoring_plugin` wires both into the CRM.
"""

from crmkit.scoring.model import Contribution, ScoreCard
from crmkit.scoring.service import Scores, scores
from crmkit.scoring.settings import FieldRule, ScoringSettings

__all__ = ["Contribution", "FieldRule", "ScoreCard", "Scores", "ScoringSettings", "scores"]
