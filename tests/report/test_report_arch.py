"""The architecture figures (Kaplan 2020 Figs. 5, 7, 8, 20) on a synthetic study drawn from known laws: every
figure drawn, the numbers it shows recover the truth, and the page renders in headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest
from report_chromium import chromium_binary, run_chromium

from scalinglab.report.build import render_report
from scalinglab.report.context import build_context
from scalinglab.report.data import StudyData
from scalinglab.report.figures_arch import findings
from scalinglab.report.synthetic import synthetic_arch_study

FIGS = ("shape", "position_loss", "lstm_vs_transformer", "transfer")


@pytest.fixture(scope="module")
def arch():
    s = synthetic_arch_study(seed=0)
    return s, StudyData.from_frames(s.runs, None, [], None, positions=s.positions, eval_sets=s.eval_sets,
                                    name="arch")


@pytest.fixture(scope="module")
def page(arch, tmp_path_factory):
    # the arch figures do not need the laws the report would fit itself: fit_missing=False keeps it quick
    return render_report(arch[1], tmp_path_factory.mktemp("arch") / "report", pdf=False, fit_missing=False)


def test_the_figures_show_the_true_laws(arch, page):
    s, data = arch
    assert set(FIGS) <= set(page.figures), page.skipped
    f = findings(build_context(data, fit_missing=False))
    ta = s.arch
    w = np.sqrt(0.03 / ta.shape_c)  # truth: within 3 % for r in shape_best e^(+-w)
    for g in f.shape:
        assert g.result.lo == pytest.approx(ta.shape_best * np.exp(-w), rel=0.15)
        assert g.result.hi == pytest.approx(ta.shape_best * np.exp(w), rel=0.15)
    tr = f.context.trend["gpt"]
    assert tr.slope_ci[0] < ta.a_slope < tr.slope_ci[1]
    gpt = f.context.table[f.context.table["arch"] == "gpt"]
    truth = ta.a_0 + ta.a_slope * np.log10(gpt["N"] / 1e5)
    assert np.allclose(gpt["a"], truth, atol=0.03)
    b = f.families.best
    assert b["gap_late"] == pytest.approx(ta.lstm_gap, abs=0.01) and b["gap_early"] < 0.1
    res = f.transfer["text:other"]["gpt"]
    assert res.offset_ci[0] < np.log(ta.transfer_ratio) < res.offset_ci[1]
    page_html = page.path.read_text()
    for title in ("Loss vs model shape at fixed N", "Loss by position in the context", "LSTM vs transformer",
                  "Transfer to other distributions", "log(L_other/L_train) = +0.18"):
        assert title in page_html, title
    # the other figures keep to the transformers of a two-family study
    assert len(build_context(data, fit_missing=False).pts) == (data.runs["arch"] == "gpt").sum()


@pytest.mark.skipif(chromium_binary() is None,
                    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it")
def test_arch_page_renders_in_headless_chromium(page, tmp_path):
    proc = run_chromium(page.path, tmp_path, screenshot=tmp_path / "p.png", dump_dom=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = len(page.figures)
    assert f'data-images-loaded="{n}/{n}"' in proc.stdout
    assert [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln] == []
