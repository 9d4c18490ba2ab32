"""The HTML report: self-contained, figures embedded, and really rendered by a browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.html import render_html
from tests.results_fixture import make_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.result_rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src"))
        if tag == "tr" and "data-backend" in a:
            self.result_rows.append(a["data-backend"])


def png_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(src.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])  # IHDR width, height


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_page_is_self_contained_with_one_figure_per_plot():
    data = make_results()
    page = parse(render_html(data))
    assert page.external == []
    assert len(page.images) == 3  # latency, throughput, agreement; no rollout rows here
    assert all(w > 100 and h > 100 for w, h in map(png_size, page.images))
    assert len(page.result_rows) == len(data["rows"])


def test_a_ci_that_misses_its_median_still_draws_every_plot():
    # a pooled bootstrap CI may miss the pooled median, and a file may be edited by hand
    data = make_results()
    row = next(r for r in data["rows"] if r.get("ci95_low_ms"))
    row["ci95_low_ms"], row["ci95_high_ms"] = 3 * row["median_ms"], 4 * row["median_ms"]
    assert len(parse(render_html(data)).images) == 3


def test_rollout_rows_with_per_step_errors_add_the_horizon_plot():
    html = render_html(make_results(rollout=True))
    assert len(parse(html).images) == 4 and 'id="fig-rollout-error"' in html


def test_unmeasured_rows_say_why_and_text_is_escaped():
    html = render_html(make_results())
    assert "failed: RuntimeError: boom | twice" in html
    assert "unavailable: torch.compile needs a C++ compiler" in html
    assert "<script" not in html


@pytest.mark.parametrize("verdict, tone", [
    ("valid", "ok"), ("unchecked", "warn"), ("contended", "bad"), ("unsteady", "bad")])
def test_the_verdict_is_marked_as_far_as_its_speeds_can_be_trusted(verdict, tone):
    judged = {"verdict": verdict, "max_foreign_cores": 0.4, "max_set_aside": 0.25,
              "rows_contended": 1 if verdict == "contended" else 0, "busiest": [],
              "max_canary_spread": 1.06, "canary_spread": 1.2 if verdict == "unsteady" else 1.02,
              "canary_rounds": 80}
    html = render_html({**make_results(), "verdict": judged})
    assert re.search(rf'<p class="verdict {tone}">verdict: {verdict}', html, re.IGNORECASE)


PROBE = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
    rows: [...document.querySelectorAll("table.results tbody tr")].map(tr => tr.dataset.backend),
  });
  document.body.appendChild(probe);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_loads_every_image_and_shows_every_row(tmp_path: Path):
    data = make_results(rollout=True)
    # The probe goes into the test's copy only: the report itself carries no script.
    page = tmp_path / "report.html"
    page.write_text(render_html(data).replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium exited {done.returncode} without the probe: {done.stderr[-2000:]}"
    probe = json.loads(unescape(found.group(1)))
    assert len(probe["images"]) == 4
    for image in probe["images"]:
        assert image["complete"] and image["width"] > 0, image
    assert probe["rows"] == [r["backend"] for name in ("default", "rollout")
                             for r in sorted_rows(data, name)]


def sorted_rows(data: dict, scenario: str) -> list[dict]:
    from reports.columns import sort_rows

    return sort_rows([r for r in data["rows"] if r["scenario"] == scenario])
