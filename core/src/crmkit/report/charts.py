"""Charts rendered on the server as inline SVG, so the dashboard needs no JavaScript library
and no network to show them.

Every builder returns one ``<svg>`` element as :class:`markupsafe.Markup`, ready to be placed
in an autoescaped Jinja template. The SVG is built with :mod:`xml.etree.ElementTree`, which
escapes every label and title (``<``, ``&``, ``"``), so data from the CRM can never inject
markup. Each chart carries ``data-chart="<name>"`` (a stable handle for tests and styling), an
accessible ``<title>`` and ``role="img"``; each bar or point carries ``data-label`` and
``data-value`` (the raw number) and a ``<title>`` tooltip. No ``xmlns`` is written: inline
``<svg>`` in HTML is in the SVG namespace without one, and the file stays free of URLs.

The builders take values already formatted for display (``Bar.text``): units are the
caller's business, geometry is this module's.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

import attrs
from markupsafe import Markup

WIDTH = 720
LABEL_WIDTH = 170
VALUE_WIDTH = 200
BAR_AREA = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 10
ROW_HEIGHT = 28
BAR_HEIGHT = 18
TITLE_HEIGHT = 30
LEGEND_HEIGHT = 22
LINE_HEIGHT = 240
LABEL_CHARS = 24
EMPTY_MESSAGE = "No data for this period"


@attrs.frozen
class Bar:
    """One labelled value. ``value`` None means undefined for the data (nothing to divide by):
    no bar is drawn and ``text`` (``—`` by default) says so."""

    label: str
    value: float | None
    text: str = "—"
    tone: str = ""  # extra CSS class (e.g. ``won`` / ``lost`` for outcome stages)


def _number(value: float | None) -> float | None:
    """A finite float, or None (NaN and infinities are treated as undefined)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(number: float) -> str:
    """Coordinates with one decimal, without a trailing ``.0``."""
    text = f"{number:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _id(name: str) -> str:
    return "chart-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _svg(name: str, title: str, height: float) -> ET.Element:
    svg = ET.Element("svg", {
        "class": "chart", "data-chart": name, "role": "img", "aria-labelledby": f"{_id(name)}-title",
        "viewBox": f"0 0 {WIDTH} {_fmt(height)}", "width": "100%", "preserveAspectRatio": "xMinYMin meet",
    })
    ET.SubElement(svg, "title", {"id": f"{_id(name)}-title"}).text = title
    ET.SubElement(svg, "text", {"class": "chart-title", "x": "0", "y": "18"}).text = title
    return svg


def _markup(svg: ET.Element) -> Markup:
    return Markup(ET.tostring(svg, encoding="unicode", short_empty_elements=True))


def empty_chart(name: str, title: str, message: str = EMPTY_MESSAGE) -> Markup:
    """A chart frame that says there is nothing to draw (same handle and title as the chart)."""
    svg = _svg(name, title, TITLE_HEIGHT + 50)
    svg.set("data-empty", "true")
    ET.SubElement(svg, "text", {"class": "empty", "x": _fmt(WIDTH / 2), "y": _fmt(TITLE_HEIGHT + 28), "text-anchor": "middle"}).text = message
    return _markup(svg)


def _scale(values: Sequence[float | None]) -> float:
    """The largest positive value (bars are drawn from zero; negatives get no length)."""
    return max((v for v in (_number(x) for x in values) if v is not None and v > 0), default=0.0)


def bar_length(value: float | None, largest: float, area: float = BAR_AREA) -> float:
    """Length of a bar for ``value`` when ``largest`` fills ``area``: 0 for an undefined,
    negative or all-zero chart, never a division by zero."""
    number = _number(value)
    if number is None or number <= 0 or largest <= 0:
        return 0.0
    return area * min(number, largest) / largest


def _row(parent: ET.Element, bar: Bar, y: float, length: float, x: float, css: str, *, labelled: bool = True) -> ET.Element:
    number = _number(bar.value)
    group = ET.SubElement(parent, "g", {
        "class": " ".join(c for c in ("bar", css, bar.tone) if c), "data-label": bar.label,
        "data-value": "" if number is None else repr(number),
    })
    ET.SubElement(group, "title").text = f"{bar.label}: {bar.text}"
    ET.SubElement(group, "text", {"class": "label", "x": _fmt(LABEL_WIDTH - 8), "y": _fmt(y + BAR_HEIGHT - 5),
                                  "text-anchor": "end"}).text = _short(bar.label) if labelled else ""
    ET.SubElement(group, "rect", {"x": _fmt(x), "y": _fmt(y), "width": _fmt(length), "height": str(BAR_HEIGHT), "rx": "2"})
    ET.SubElement(group, "text", {"class": "value", "x": _fmt(LABEL_WIDTH + BAR_AREA + 10), "y": _fmt(y + BAR_HEIGHT - 5)}).text = bar.text
    return group


def bar_chart(name: str, title: str, bars: Sequence[Bar], *, empty: str = EMPTY_MESSAGE) -> Markup:
    """Horizontal bars from zero, the largest value filling the bar area."""
    return grouped_bar_chart(name, title, {"": bars}, empty=empty)


def grouped_bar_chart(name: str, title: str, series: Mapping[str, Sequence[Bar]], *, empty: str = EMPTY_MESSAGE) -> Markup:
    """Horizontal bars, one per series for each category, on one shared scale.

    Every series lists its bars for the same categories in the same order (the first series'
    labels name the categories). A legend is drawn when there is more than one series.
    """
    columns = list(series.items())
    categories = len(columns[0][1]) if columns else 0
    if not categories or all(_number(b.value) is None for _, bars in columns for b in bars):
        return empty_chart(name, title, empty)
    largest = _scale([b.value for _, bars in columns for b in bars])
    legend = len(columns) > 1
    top = TITLE_HEIGHT + (LEGEND_HEIGHT if legend else 0)
    group_height = ROW_HEIGHT * len(columns) + (8 if legend else 0)
    svg = _svg(name, title, top + group_height * categories + 4)
    if legend:
        for index, (label, _) in enumerate(columns):
            x = LABEL_WIDTH + index * 200
            key = ET.SubElement(svg, "g", {"class": f"legend series-{index}"})
            ET.SubElement(key, "rect", {"x": _fmt(x), "y": str(TITLE_HEIGHT), "width": "12", "height": "12"})
            ET.SubElement(key, "text", {"x": _fmt(x + 18), "y": str(TITLE_HEIGHT + 11)}).text = label
    for index, (series_label, bars) in enumerate(columns):
        for position, bar in enumerate(bars):
            y = top + position * group_height + index * ROW_HEIGHT
            # The category is named once, on its first series' row.
            row = _row(svg, bar, y, bar_length(bar.value, largest), LABEL_WIDTH, f"series-{index}", labelled=index == 0)
            if legend:
                row.set("data-series", series_label)
    return _markup(svg)


def funnel_chart(name: str, title: str, stages: Sequence[Bar], outcomes: Sequence[Bar] = (), *,
                 empty: str = EMPTY_MESSAGE) -> Markup:
    """A funnel: open stages as bars centred on one axis, each as long as its count relative to
    the largest, then the outcome stages (won, lost) below a rule, on the same scale."""
    if not stages or all(not _number(b.value) for b in (*stages, *outcomes)):
        return empty_chart(name, title, empty)
    largest = _scale([b.value for b in (*stages, *outcomes)])
    gap = 12 if outcomes else 0
    svg = _svg(name, title, TITLE_HEIGHT + ROW_HEIGHT * (len(stages) + len(outcomes)) + gap + 4)
    for position, bar in enumerate(stages):
        length = bar_length(bar.value, largest)
        _row(svg, bar, TITLE_HEIGHT + position * ROW_HEIGHT, length, LABEL_WIDTH + (BAR_AREA - length) / 2, "stage")
    if outcomes:
        rule = TITLE_HEIGHT + len(stages) * ROW_HEIGHT + gap / 2 - 2
        ET.SubElement(svg, "line", {"class": "rule", "x1": str(LABEL_WIDTH), "x2": str(LABEL_WIDTH + BAR_AREA),
                                    "y1": _fmt(rule), "y2": _fmt(rule)})
    for position, bar in enumerate(outcomes):
        length = bar_length(bar.value, largest)
        y = TITLE_HEIGHT + (len(stages) + position) * ROW_HEIGHT + gap
        _row(svg, bar, y, length, LABEL_WIDTH + (BAR_AREA - length) / 2, "outcome")
    return _markup(svg)


def line_chart(name: str, title: str, points: Sequence[Bar], *, low: str = "", high: str = "",
               empty: str = EMPTY_MESSAGE) -> Markup:
    """A series over time: a line through the defined points (broken where a value is
    undefined), a dot with a tooltip per point, the zero line, and the axis' lowest and highest
    values labelled with ``low`` / ``high`` (formatted by the caller; the scale always
    includes zero, so a negative score such as an NPS of -20 is drawn below the zero line)."""
    values = [_number(p.value) for p in points]
    defined = [v for v in values if v is not None]
    if not defined:
        return empty_chart(name, title, empty)
    bottom, top = min(0.0, *defined), max(0.0, *defined)
    if top == bottom:
        top = bottom + 1.0  # all zeros: a flat line on the axis, not a division by zero
    left, right, upper, lower = 70.0, WIDTH - 20.0, TITLE_HEIGHT + 10.0, LINE_HEIGHT - 40.0
    step = (right - left) / max(len(points) - 1, 1)

    def y_of(value: float) -> float:
        return lower - (value - bottom) / (top - bottom) * (lower - upper)

    svg = _svg(name, title, LINE_HEIGHT)
    axes = ET.SubElement(svg, "g", {"class": "axes"})
    ET.SubElement(axes, "line", {"class": "zero", "x1": _fmt(left), "x2": _fmt(right), "y1": _fmt(y_of(0.0)), "y2": _fmt(y_of(0.0))})
    ET.SubElement(axes, "line", {"x1": _fmt(left), "x2": _fmt(left), "y1": _fmt(upper), "y2": _fmt(lower)})
    ET.SubElement(axes, "text", {"x": _fmt(left - 6), "y": _fmt(upper + 4), "text-anchor": "end"}).text = high
    ET.SubElement(axes, "text", {"x": _fmt(left - 6), "y": _fmt(lower + 4), "text-anchor": "end"}).text = low
    every = max(1, math.ceil(len(points) / 8))  # at most ~8 period labels fit under the axis
    last = len(points) - 1
    for index, point in enumerate(points):
        # Every ``every``-th period and the last, skipping one that would crowd the last.
        if index == last or (index % every == 0 and last - index >= every):
            ET.SubElement(axes, "text", {"class": "tick", "x": _fmt(left + index * step), "y": _fmt(lower + 18),
                                         "text-anchor": "middle"}).text = _short(point.label)
    run: list[str] = []
    segments: list[list[str]] = [run]
    for index, value in enumerate(values):
        if value is None:
            run = []
            segments.append(run)
        else:
            run.append(f"{_fmt(left + index * step)},{_fmt(y_of(value))}")
    for segment in segments:
        if len(segment) > 1:
            ET.SubElement(svg, "polyline", {"class": "line", "points": " ".join(segment), "fill": "none"})
    for index, (point, value) in enumerate(zip(points, values, strict=True)):
        if value is None:
            continue
        dot = ET.SubElement(svg, "g", {"class": "point", "data-label": point.label, "data-value": repr(value)})
        ET.SubElement(dot, "title").text = f"{point.label}: {point.text}"
        ET.SubElement(dot, "circle", {"cx": _fmt(left + index * step), "cy": _fmt(y_of(value)), "r": "4"})
    return _markup(svg)
