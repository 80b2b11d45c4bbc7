"""Lead scoring: rule-based points per activity kind and per profile field, with time decay,
lifecycle promotion at thresholds, updated from events and explained rule by rule.

* :mod:`.settings` — ``[plugins.scoring]``;
* :mod:`.model` — the score as a pure function of a contact, its activities and a moment;
* :mod:`.service` — ``crm.scores`` and the event handling.

The built-in plugin :mod:`crmkit.builtin.scoring_plugin` wires it into the CRM. A predictive
(machine-learned) score is not built.
"""

from crmkit.scoring.model import Contribution, ScoreCard
from crmkit.scoring.service import Scores, scores
from crmkit.scoring.settings import FieldRule, ScoringSettings

__all__ = ["Contribution", "FieldRule", "ScoreCard", "Scores", "ScoringSettings", "scores"]
