"""Plotly charts in one offline HTML page: plotly.js once, in the head; each chart a div.

shiftover's pages (the run report here; the load report and the scale chart do the
same with ``include_plotlyjs`` on their first chart) are single files that must open
anywhere, with no network: an incident review happens on a laptop on a train, and a
page that fetched plotly.js from a CDN would be a page of empty boxes. So the library
is inlined, once, in ``<head>`` (before any chart's script runs, whatever order the
charts are placed in), and every chart is a div with its own small script.

Figures are plain dicts (``{"data": [...], "layout": {...}}``), so the page's data
can be tested without a browser, and plotly's own validation is skipped (it is slow
and every figure here is built from a fixed shape).

Text that plotly draws (titles, hover labels, annotations) is plotly's pseudo-HTML:
``<b>``, ``<br>`` and entities are interpreted, and a reason such as
``p = 0.002 <= alpha 0.01 (...>...)`` would lose what looks like a tag. Pass every
piece of outside text through :func:`plotly_text` first.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["axis", "chart_div", "layout", "plotly_js_tag", "plotly_text"]

CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


def layout(*, top: int, bottom: int, legend_y: float) -> dict[str, Any]:
    """The layout every shiftover chart starts from: white plot, closest-point hover, a
    horizontal legend under the chart (``legend_y`` below the plot area)."""
    return {"margin": {"l": 70, "r": 30, "t": top, "b": bottom}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": legend_y}, "plot_bgcolor": "#ffffff"}


def axis(title: str, **kw: Any) -> dict[str, Any]:
    """An axis with a title, light grid lines and no zero line (``kw`` added as is)."""
    return {"title": {"text": title}, "gridcolor": "#e5e5e5", "zeroline": False, **kw}


def plotly_js_tag() -> str:
    """plotly.js, inlined, as ``<script>`` tags for the page's ``<head>`` (about 4.6 MB)."""
    from plotly.offline import get_plotlyjs

    js: str = get_plotlyjs()
    return ("<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};"
            "</script>\n<script type=\"text/javascript\">" + js + "</script>")


def chart_div(figure: Mapping[str, Any], div_id: str, *, height: str = "360px") -> str:
    """One chart: its div and the script that draws it (plotly.js must be on the page)."""
    import plotly.io as pio

    return str(pio.to_html(dict(figure), include_plotlyjs=False, full_html=False, validate=False,
                           div_id=div_id, default_height=height, config=CONFIG))


def plotly_text(text: Any) -> str:
    """Outside text as plotly shows it verbatim: ``&``, ``<`` and ``>`` as entities."""
    return html.escape(str(text), quote=False)
