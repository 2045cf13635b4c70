"""The report's one compute-optimal answer (report.answer): the same as `study fit`'s when the store holds it,
refused everywhere when the L(N, D) fit cannot support it, never a loss below a fitted floor; every fitted
line with its 95 % band; captions that name only what is drawn; PNGs >= 1000 px wide."""

from __future__ import annotations

import dataclasses
import html
import re
import struct

import numpy as np
import pytest

from scalinglab.report.build import FIGURES, render_report
from scalinglab.report.data import StudyData
from scalinglab.report.synthetic import synthetic_study

pytest.importorskip("scalinglab.laws.consensus")

def _fresh(ctx):
    """A copy of a drawn report's context with empty notes (the fits and the answer kept)."""
    keep = {k: v for k, v in ctx.cache.items() if k in ("answer", "isoflop_sets", "isoflop_minima")}
    return dataclasses.replace(ctx, notes={}, skipped={}, cache=keep)


def _grid_study(**kw):
    """10 grid runs (5 sizes x D = 4M, 16M tokens: 0.6 decades of D) drawn from the synthetic law: too little
    D for the Chinchilla fit to pin E down (``laws`` reports it not identified)."""
    s = synthetic_study(50, seed=0, evals=False, points_per_run=30, **kw)
    grid = s.runs["run_id"].str[:4].isin([f"r{i:03d}" for i in range(30, 45)]) & (s.runs["tokens"] < 3e7)
    r = s.runs[grid]
    return StudyData.from_frames(r, s.metrics[s.metrics["run_id"].isin(r["run_id"])], [], None, name="grid")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A study store holding `study fit`'s rows L(N,D) and compute-optimal, the answer made with other
    settings than the report's own (target 7x the largest run, 40 bootstrap draws), and its report."""
    from scalinglab.laws.consensus import consensus
    from scalinglab.laws.fit import fit
    from scalinglab.report.answer import answer_tables
    from scalinglab.report.context import build_context
    from scalinglab.report.data import load_study
    from scalinglab.report.synthetic import write_store
    from scalinglab.study.fitting import ANSWER
    from scalinglab.study.store import Store

    d = tmp_path_factory.mktemp("stored")
    write_store(synthetic_study(24, seed=1, points_per_run=20, evals=False), d)
    ctx = build_context(load_study(d))
    runs, curves = answer_tables(ctx)
    lnd = fit("chinchilla", runs[["N", "D", "loss"]], bootstrap=40, seed=0, starts=300)

    def refit(df):
        return fit("chinchilla", df[["N", "D", "loss"]], bootstrap=40, seed=0, starts=300)

    c = consensus(runs, curves, target_C=7 * runs["C"].max(), lnd=lnd, fit_lnd=refit, bootstrap=40)
    with Store(d) as s:
        s.put_fit("L(N,D)", "h1", lnd.to_dict(samples=True), None)
        s.put_fit(ANSWER, "h2", c.to_dict(), None)
        fits = s.fits()
    return render_report(load_study(d), d / "report", pdf=False), fits


def test_page_shows_the_stored_answer_as_study_fit_prints_it(stored):
    from scalinglab.laws.consensus import APPROACHES, Consensus
    from scalinglab.report.answer import STORED
    from scalinglab.report.style import fmt_si
    from scalinglab.study.fitting import answer

    r, fits = stored
    want = answer(fits)
    assert r.answer == want and r.answer_source == STORED  # used as is, not recomputed
    page = r.path.read_text()
    top = page[: page.index("id=figures")]
    assert top.index("id=answer") < top.index("id=next") < top.index("id=predictions")
    # the block `study fit` prints, verbatim
    assert html.escape("\n".join(Consensus.lines_of(want))) in page
    # the table: each approach's exponent with its interval, the verdict, the allocation with intervals
    answer_html = page[page.index("id=answer") : page.index("id=next")]
    for k, ap in want["approaches"].items():
        assert html.escape(APPROACHES[k]) in answer_html
        lo, hi = ap["a_ci"]
        assert f"{ap['a']:.3f} <span class=meta>[{lo:.3f}, {hi:.3f}]</span>" in answer_html
    assert ("intervals overlap" in answer_html) == (want["overlap"] is not None)
    a = want["allocation"]
    assert not want["refused"] and a is not None
    n_lo, n_hi = a["N_opt_ci"]
    assert f"{fmt_si(a['N_opt'])} <span class=meta>[{fmt_si(n_lo)}, {fmt_si(n_hi)}]</span>" in answer_html
    assert f"C = {a['C']:.4g} FLOPs" in answer_html
    # the predictions and the advice carry the same numbers: a row at the stored target (7x), from the answer
    t = r.predictions.table
    row = t[np.isclose(t["C"], a["C"], rtol=1e-6)].iloc[0]
    assert row["factor"] == pytest.approx(7.0) and row["N_opt"] == a["N_opt"] and row["D_opt"] == a["D_opt"]
    assert (row["N_lo"], row["N_hi"]) == (n_lo, n_hi) and row["loss"] == pytest.approx(a["loss"])
    assert sorted(t["factor"].round(6)) == [7.0, 10.0, 100.0, 1000.0]
    assert r.advice[0].startswith(f"Train next at {a['C']:.3g} FLOPs") or "disagree" in r.advice[0]
    assert any(f"N = {fmt_si(a['N_opt'])} [" in s for s in r.advice)
    # the exponents of ReportResult (the old contract) are the answer's
    rows = {e["approach"].split(":")[0]: e for e in r.exponents}
    for k, ap in want["approaches"].items():
        assert rows[k]["a"] == ap["a"]


def test_a_study_whose_lnd_is_not_identified_is_refused_everywhere(tmp_path):
    d = _grid_study()
    r = render_report(d, tmp_path / "report", pdf=False)
    lnd = r.fits["lnd"]
    assert lnd.support_problems() and "E" in lnd.unidentified()
    assert r.answer["chosen"] == "3" and r.answer["refused"].startswith("the L(N,D) fit cannot support it")
    assert "to fix:" in r.answer["refused"]
    # predictions: no table, the reason; advice: the reason, no allocation, no loss
    assert len(r.predictions.table) == 0 and r.answer["refused"] in r.predictions.why_not
    assert any(a.startswith("No compute-optimal recommendation: the L(N,D) fit") for a in r.advice)
    assert not any("Train next" in a or "predicted loss" in a for a in r.advice)
    page = r.path.read_text()
    top = page[page.index("id=answer") : page.index("id=figures")]
    assert "Allocation REFUSED" in top and "No predictions: the answer is refused" in top
    assert "<th>N_opt, parameters</th>" not in top  # no allocation table at all
    # the figures: no allocation line from the fit, no D -> infinity line from a non-identified E
    ctx = _fresh(r.context)
    from scalinglab.report import figures_alloc as fa
    from scalinglab.report import figures_loss as fl

    fig = fl.fig_lnd_family(ctx)
    labels = [ln.get_label() for ax in fig.axes for ln in ax.get_lines()]
    assert "fit, D -> infinity" not in labels
    assert any(n.startswith("No D -> infinity line: E is not identified") for n in ctx.notes["lnd_family"])
    # the loss axis is not stretched towards E ~ 0: it stays near the data
    lo, _ = fig.axes[0].get_ylim()
    assert lo > 0.8 * r.context.pts["loss"].min()
    fig = fa.fig_optimal_allocation(ctx)
    labels = [ln.get_label() for ax in fig.axes for ln in ax.get_lines()]
    assert "L(N, D) fit (Approach 3)" not in labels and not any("the answer" in x for x in labels)
    assert any(n.startswith("No L(N, D) line: the L(N, D) fit cannot support") for n in ctx.notes[
        "optimal_allocation"])


def test_no_loss_below_a_fitted_irreducible_loss(rendered):
    """A floor above the allocation's loss (the lead's mechanism test in tests/laws, here through the page):
    the loss is refused at the answer's budget and at every other budget, and no printed loss is below it."""
    from scalinglab.laws.consensus import Floor, consensus
    from scalinglab.laws.fit import fit
    from scalinglab.report.advice import advice
    from scalinglab.report.answer import Answer, answer_tables
    from scalinglab.report.html import _answer, _predictions
    from scalinglab.report.tables import predictions

    ctx = _fresh(rendered.context)
    runs, curves = answer_tables(ctx)
    lnd = ctx.fits["lnd"].result
    a0 = rendered.answer["allocation"]
    high = Floor(low=a0["loss"] + 0.05, source="L_inf of L(N)", max_D=1e30)

    def refit(df):
        return fit("chinchilla", df[["N", "D", "loss"]], bootstrap=20, seed=0, starts=300)

    c = consensus(runs, curves, target_C=a0["C"], lnd=lnd, fit_lnd=refit, floors=[high], bootstrap=20)
    ctx.cache["answer"] = ans = Answer(c.to_dict(), "test", runs=runs, curves=curves, lnd=lnd, floors=[high])
    p = predictions(ctx)
    assert len(p.table) == 3 and p.table["loss"].isna().all()
    assert p.table["loss_refused"].str.contains("below the irreducible loss").all()
    page = _answer(ans)
    alloc = page[page.index("The allocation at") : page.index("<details>")]  # (not the back-tests above)
    adv = " ".join(advice(ctx))
    assert "no loss is predicted" in adv and not re.search(r"predicted loss \d", adv)
    assert "refused" in _predictions(p) and "<span class=bad>refused</span>" in alloc
    text = adv + _predictions(p) + alloc + "\n".join(ans.lines()[ans.lines().index(
        next(x for x in ans.lines() if x.startswith("allocation"))):])
    # every loss printed (the floor itself is; "E = ..." is L(N, D)'s own bound, not a prediction)
    losses = [float(x) for x in re.findall(r"(?<!E = )\b(\d+\.\d+) nats/token", text)]
    assert losses and all(v >= high.low - 1e-4 for v in losses), losses


def test_printed_losses_respect_the_answers_floors(rendered):
    """On the synthetic study every predicted loss and its interval's low end is above every floor that
    applies (here E of L(N, D)), and the prediction at 10x covers the generating law's loss there."""
    from scalinglab.laws.consensus import Floor
    from scalinglab.report.synthetic import TrueLaw

    floors = [Floor(**f) for f in rendered.answer["floors"]]
    assert floors and all(f.source for f in floors)
    for _, r in rendered.predictions.table.iterrows():
        for f in floors:
            if f.applies(r["N_opt"], r["D_opt"]):
                assert r["loss"] >= f.low and r["loss_lo"] >= f.low - 1e-12
    r = rendered.predictions.table.iloc[0]
    true = TrueLaw().loss(r["N_opt"], r["D_opt"])
    assert r["loss_lo"] <= true <= r["loss_hi"]


# figure -> the fewest fitted lines it draws on the synthetic study (each must have its band)
BANDED = {
    "loss_vs_compute": 1,
    "loss_vs_tokens": 1,
    "loss_vs_params": 1,
    "noise_scale": 1,
    "learning_curves": 2,
    "lnd_family": 4,  # one per token budget (3) and D -> infinity
    "optimal_allocation": 2,  # N_opt and D_opt panels
}


def _drawn_marks(fig) -> tuple[list, list]:
    """(dashed lines with data: the fitted lines, PolyCollections: the bands) of a figure."""
    from matplotlib.collections import PolyCollection

    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    dashed = [ln for ln in lines if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    return dashed, [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]


def test_every_fitted_line_has_its_band(rendered):
    ctx = _fresh(rendered.context)
    for spec in FIGURES:
        if spec.name not in BANDED:
            continue
        dashed, bands = _drawn_marks(spec.func(ctx))
        assert len(bands) >= BANDED[spec.name], spec.name
        assert len(bands) >= len(dashed), (spec.name, len(bands), len(dashed))  # one band per fitted line
        assert any("95" in n and ("band" in n or "shaded" in n) for n in ctx.notes[spec.name]), spec.name


def test_band_is_the_mean_curve_interval(rendered):
    """FitView.interval(noise=False), the band drawn, is narrower than a new run's interval and holds the
    fitted curve."""
    v = rendered.fits["ln"]
    n = np.geomspace(1e5, 4e7, 20)
    lo, hi = v.interval(0.95, noise=False, N=n)
    lo2, hi2 = v.interval(0.95, N=n)
    y = v.predict(N=n)
    assert np.median((hi - lo) / (hi2 - lo2)) < 0.8 and np.mean((lo <= y) & (y <= hi)) > 0.9


@pytest.mark.parametrize("fit_missing", [True, False])
def test_captions_name_only_the_marks_drawn(study, rendered, tmp_path, fit_missing):
    """Static captions describe the data; a sentence about a dashed fit or a band is there iff it is drawn
    (with --no-fit and no stored fits, no figure has a fitted line, and no caption names one)."""
    from scalinglab.report.context import build_context

    if fit_missing:
        ctx = _fresh(rendered.context)
    else:
        small = synthetic_study(20, seed=3, points_per_run=15, evals=False)
        ctx = build_context(StudyData.from_frames(small.runs, small.metrics), fit_missing=False)
    for spec in FIGURES:
        fig = spec.func(ctx)
        if fig is None:
            continue
        text = (spec.caption + " " + " ".join(ctx.notes.get(spec.name, []))).lower()
        dashed, bands = _drawn_marks(fig)
        assert ("dashed" in text) == bool(dashed), (spec.name, text)
        says_band = "shaded around" in text or "95% over its bootstrap" in text
        assert not says_band or bands, (spec.name, text)
        if not fit_missing:  # (the isoFLOP parabolas are no FitView: drawn from the data with --no-fit too)
            rest = text.replace("parabola in log n fitted to", "")
            assert not dashed and "fitted to" not in rest, spec.name


def test_pngs_are_at_least_1000_px_wide(rendered):
    for name in rendered.figures:
        png = (rendered.path.parent / "figures" / f"{name}.png").read_bytes()
        assert png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        assert width >= 1000 and height >= 600, (name, width, height)
