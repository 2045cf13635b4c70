"""The rendered report: every file written, self-contained HTML, and a headless-Chromium render."""

from __future__ import annotations

import html
import re

import pytest
from report_chromium import chromium_binary, run_chromium

from scalinglab.report.build import FIGURES

ARCH = {"shape", "position_loss", "lstm_vs_transformer", "transfer"}  # drawn by test_report_arch.py


def test_every_figure_drawn_or_explained(rendered):
    names = {f.name for f in FIGURES}
    assert set(rendered.figures) | set(rendered.skipped) == names
    # the synthetic ladder has every kind of data but repeated-data runs and the architecture experiments'
    # (their own studies)
    assert set(rendered.skipped) == ARCH | {"repeat"}, rendered.skipped
    assert "no repeat fit" in rendered.skipped["repeat"]
    assert "no shape sweep" in rendered.skipped["shape"] and "no LSTM runs" in rendered.skipped[
        "lstm_vs_transformer"]
    for must in (
        "loss_vs_compute",
        "loss_vs_tokens",
        "loss_vs_params",
        "lnd_family",
        "learning_curves",
        "isoflop",
        "noise_scale",
        "steps_examples",
        "fewshot",
        "downstream",
    ):
        assert must in rendered.figures


def test_png_and_pdf_per_figure(rendered):
    fig_dir = rendered.path.parent / "figures"
    for name in rendered.figures:
        png, pdf = fig_dir / f"{name}.png", fig_dir / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
        assert png.stat().st_size > 5000 and pdf.stat().st_size > 3000, name
    assert not list(rendered.path.parent.parent.glob(".report.tmp-*")), "temp folder left behind"


def test_html_is_self_contained(rendered):
    page = rendered.path.read_text(encoding="utf-8")
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(imgs) == len(rendered.figures)
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', page), "external resource referenced"
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert re.findall(r"<script[^>]*>", page) == ["<script>"], "only the one inline script"
    for section in ("What should I train next?", "Predictions", "Fits", "Runs"):
        assert section in page
    for name, why in rendered.skipped.items():
        assert name in page and html.escape(why) in page


@pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
)
def test_renders_in_headless_chromium(rendered, tmp_path):
    shot = tmp_path / "page.png"
    proc = run_chromium(rendered.path, tmp_path, screenshot=shot, dump_dom=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = len(rendered.figures)
    assert f'data-images-loaded="{n}/{n}"' in proc.stdout, "not every figure decoded in the browser"
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
)
def test_browser_check_catches_a_broken_page(tmp_path):
    """The same checks flag a figure that does not decode and a script error (the check can fail)."""
    from scalinglab.report.html import SCRIPT

    good = tmp_path / "ok.png"
    from scalinglab.report import style

    fig, ax = style.figure()
    ax.plot([1, 2], [1, 2])
    fig.savefig(good, format="png")
    import base64

    ok = base64.b64encode(good.read_bytes()).decode()
    page = tmp_path / "broken.html"
    page.write_text(
        f'<html><head><script>{SCRIPT}</script></head><body><img src="data:image/png;base64,{ok}">'
        '<img src="data:image/png;base64,AAAAnotapng"><script>undefinedFunction();</script></body></html>'
    )
    proc = run_chromium(page, tmp_path, dump_dom=True)
    assert 'data-images-loaded="1/2"' in proc.stdout
    assert any(":CONSOLE" in ln and "undefinedFunction" in ln for ln in proc.stderr.splitlines())


def test_a_sparse_study_still_gets_a_page(study, tmp_path):
    """Two runs, no metrics, no evals: the figures that need more say why, the page is still written."""
    from scalinglab.report.build import render_report
    from scalinglab.report.data import StudyData

    d = StudyData.from_frames(study.runs[["run_id", "params_kaplan", "tokens", "final_val_loss"]].head(2))
    out = render_report(d, tmp_path / "report", pdf=False)
    assert set(out.figures) == {"loss_vs_tokens", "loss_vs_params"}
    assert "no learning curves" in out.skipped["loss_vs_compute"]
    assert "chinchilla needs at least 6" in out.skipped["residuals"]
    assert not any(why.startswith("failed") for why in out.skipped.values())
    page = out.path.read_text()
    assert "No predictions" in page and "There is no L(N, D) fit" in page
