"""Moving data in and out of a CRM in bulk: streaming imports (CSV, JSON Lines, XLSX) with an
errors file for the rows that were rejected, and streaming exports (CSV, JSON Lines).

``crmkit import …`` and ``crmkit export …`` (:mod:`crmkit.cli.transfer_commands`) are thin
wrappers around these functions.
"""

from crmkit.transfer.exporter import (
    EXPORT_FORMATS,
    EXPORT_KINDS,
    ExportFilters,
    export,
    export_activities,
    export_contacts,
    export_deals,
    export_organizations,
)
from crmkit.transfer.importer import ImportSummary, import_contacts, import_deals, import_organizations

__all__ = [
    "EXPORT_FORMATS", "EXPORT_KINDS", "ExportFilters", "ImportSummary", "export", "export_activities", "export_contacts",
    "export_deals", "export_organizations", "import_contacts", "import_deals", "import_organizations",
]
