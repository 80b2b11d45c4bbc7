"""The domain model: attrs entities, value objects and rules. Imports no infrastructure."""

from crmkit.domain.contacts import Contact, Organization
from crmkit.domain.custom_fields import CustomFieldDefinition, FieldType
from crmkit.domain.engagement import Activity, Campaign, Consent, Task
from crmkit.domain.events import Event
from crmkit.domain.people import Role, Team, User
from crmkit.domain.sales import Deal, Pipeline, Stage, StageChange
from crmkit.domain.values import (
    Address,
    Attribution,
    ConsentStatus,
    Direction,
    LifecycleStage,
    Outcome,
)

__all__ = [
    "Activity", "Address", "Attribution", "Campaign", "Consent", "ConsentStatus", "Contact",
    "CustomFieldDefinition", "Deal", "Direction", "Event", "FieldType", "LifecycleStage",
    "Organization", "Outcome", "Pipeline", "Role", "Stage", "StageChange", "Task", "Team", "User",
]
