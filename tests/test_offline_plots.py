"""The offline DVC plots template: DVC accepts it, and the page it fills loads nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[1] / "docs" / "vendor"
TEMPLATE = VENDOR / "dvc_plots_offline.html"
SCRIPTS = ("vega-5.33.1/vega.min.js", "vega-lite-5.23.0/vega-lite.min.js",
           "vega-embed-6.29.0/vega-embed.min.js")


def test_template_inlines_the_vendored_scripts_byte_for_byte() -> None:
    page = TEMPLATE.read_text(encoding="utf8")
    for script in SCRIPTS:
        assert (VENDOR / script).read_text(encoding="utf8") in page, script
    assert page.count("{plot_divs}") == 1  # DVC replaces every occurrence
    assert "{scripts}" not in page  # else DVC adds its CDN <script src=...> tags


def test_dvc_fills_it_into_a_page_without_remote_scripts(tmp_path: Path) -> None:
    render = pytest.importorskip("dvc_render")
    from dvc_render.html import render_html

    renderer = render.VegaRenderer(
        [{"step": 1, "log_evidence": -80.0}, {"step": 2, "log_evidence": -50.0}],
        "rounds/log_evidence.tsv", x="step", y="log_evidence",
    )
    out = Path(render_html([renderer], tmp_path / "index.html", html_template=TEMPLATE))
    page = out.read_text(encoding="utf8")
    assert "vegaEmbed('#" in page and '"log_evidence": -50.0' in page
    assert re.findall(r"<script[^>]*\bsrc=", page) == []  # nothing is fetched
    assert "cdn.jsdelivr" not in page
