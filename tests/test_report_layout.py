"""The report reads as a protocol writer needs it: caveats first, narrow tables, wrapping labels.

Two tiers: a DOM test that always runs (the order of the sections, no table wider than eight
columns, CSS that wraps labels), and a real-browser test (marked ``browser``) that renders the
report in headless Chromium at 1280 px and measures it. Chromium is a Debian package:
``apt-get install chromium``; without it the browser test is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from lmsbayes.report import MAX_COLUMNS, write_report


class _Outline(HTMLParser):
    """Section ids in order, and the column count of every table."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tables: list[int] = []
        self._row = 0
        self._in_table = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "id" in a:
            self.sections.append(a["id"])
        elif tag == "table":
            self._in_table = True
            self.tables.append(0)
        elif tag == "tr":
            self._row = 0
        elif tag in ("td", "th") and self._in_table:
            self._row += 1
            self.tables[-1] = max(self.tables[-1], self._row)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report_html(default_fit, tmp_path_factory):
    out = tmp_path_factory.mktemp("layout")
    return write_report(default_fit, out)


def test_caveats_come_first_then_the_answer_then_the_details(report_html, default_fit):
    html = report_html.read_text(encoding="utf-8")
    p = _Outline()
    p.feed(html)
    assert p.sections[:3] == ["caveats", "answer", "thresholds"]
    # every flagged row of the table is in the caveats, before any figure or detail table
    from lmsbayes.predict import threshold_table, thresholds

    table = threshold_table(thresholds(default_fit), fit=default_fit)
    flagged = table[table["flags"].astype(str).str.len() > 0]
    assert len(flagged) > 0
    first_img = html.index("<img")
    for _, r in flagged.iterrows():
        needle = f"{r['setting']} ({r['landmark']:g} mo): "
        assert -1 < html.index(needle) < html.index("id='thresholds'") < first_img


def test_no_table_is_wider_than_eight_columns(report_html):
    p = _Outline()
    p.feed(report_html.read_text(encoding="utf-8"))
    assert p.tables and max(p.tables) <= MAX_COLUMNS


def test_numbers_are_formatted_for_reading(report_html):
    text = report_html.read_text(encoding="utf-8")
    assert "landmark 3.000" not in text and "685.000" not in text and "0.000000" not in text
    assert re.search(r"\d+% \(\d+-\d+\)", text)  # "52% (46-58)"


def test_labels_wrap_instead_of_overflowing(report_html):
    css = report_html.read_text(encoding="utf-8").split("<style>")[1].split("</style>")[0]
    assert "white-space:normal" in css and "overflow-wrap:break-word" in css
    assert "img{max-width:100%" in css and "white-space:pre-wrap" in css


def test_the_design_is_built_on_a_supported_row(report_html):
    text = report_html.read_text(encoding="utf-8")
    assert "2L+ case mix" in text and "2L+ R-T trial" not in text
    # the MAP-p0 curve's low P(success) is explained beside it
    assert "Why the second curve is so low" in text


_PROBE = """<script>
window.addEventListener('load', () => {
  const cav = document.getElementById('caveats');
  const m = {scrollWidth: document.documentElement.scrollWidth,
             clientWidth: document.documentElement.clientWidth,
             caveatsTop: cav.getBoundingClientRect().top,
             firstFlagBottom: cav.querySelector('li') ?
                 cav.querySelector('li').getBoundingClientRect().bottom : -1,
             viewport: window.innerHeight,
             wideTables: [...document.querySelectorAll('table')]
                 .filter(t => t.getBoundingClientRect().right >
                              document.documentElement.clientWidth + 1)
                 .length};
  document.body.setAttribute('data-metrics', JSON.stringify(m));
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.browser
def test_in_a_real_browser_flags_are_on_the_first_screen_and_nothing_overflows(
    report_html, tmp_path
):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium: apt-get install chromium")
    page = tmp_path / "probe.html"
    page.write_text(
        report_html.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
        encoding="utf-8",
    )
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,800",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    raw = re.search(r'data-metrics="([^"]+)"', out)
    assert raw, "the probe did not run"
    m = json.loads(raw.group(1).replace("&quot;", '"'))
    assert m["scrollWidth"] <= m["clientWidth"] + 1, m  # no horizontal scrolling at 1280 px
    assert m["wideTables"] == 0, m
    assert 0 <= m["caveatsTop"] < m["viewport"] and 0 < m["firstFlagBottom"] <= m["viewport"], m
