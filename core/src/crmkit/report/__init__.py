"""``crmkit report``: a self-contained HTML dashboard of the CRM's metrics.

:func:`write_report` builds and writes it; :func:`build_dashboard` gives the numbers as data.
Charts are inline SVG rendered on the server (:mod:`crmkit.report.charts`), so the file opens
offline, with no JavaScript and no external resource.
"""

from crmkit.report.build import Chart, Dashboard, Section, Tile, build_dashboard, render_dashboard, write_report

__all__ = ["Chart", "Dashboard", "Section", "Tile", "build_dashboard", "render_dashboard", "write_report"]
