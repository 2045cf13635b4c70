"""Build the report: figures (PNG + PDF) and ``index.html`` into ``<study>/report/``, atomically.

The folder is written next to the old one and switched in atomically (``scalinglab.io.replace_dir``), so
a reader never sees half a report, nor none, and a crash leaves the previous one intact; what a killed
build left behind is swept at the start of the next one.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scalinglab.faults import point
from scalinglab.io import replace_dir, sweep_temps, temp_dir, writing
from scalinglab.report import figures_alloc as fa
from scalinglab.report import figures_arch as farch
from scalinglab.report import figures_batch as fb
from scalinglab.report import figures_eval as fe
from scalinglab.report import figures_extra as fx
from scalinglab.report import figures_loss as fl
from scalinglab.report import style
from scalinglab.report.advice import advice
from scalinglab.report.answer import exponent_rows, get_answer
from scalinglab.report.context import Context, build_context
from scalinglab.report.data import StudyData, load_study
from scalinglab.report.html import FigureOut, render_page
from scalinglab.report.tables import fit_rows, predictions


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    func: Callable[[Context], object]
    caption: str


FIGURES = [
    FigureSpec(
        "loss_vs_compute",
        "Loss vs compute",
        fl.fig_loss_vs_compute,
        "Validation loss of every finished run along training against cumulative training FLOPs, coloured "
        "by model size; black dots mark the frontier, the lowest loss reached at each compute (Kaplan et al. "
        "2020, Fig. 1 left).",
    ),
    FigureSpec(
        "loss_vs_tokens",
        "Loss vs data",
        fl.fig_loss_vs_tokens,
        "Final validation loss against training tokens D, coloured by model size.",
    ),
    FigureSpec(
        "loss_vs_params",
        "Loss vs model size",
        fl.fig_loss_vs_params,
        "Final validation loss of every run against N (grey) and the best run per size (blue).",
    ),
    FigureSpec(
        "lnd_family",
        "The L(N, D) family",
        fl.fig_lnd_family,
        "Loss against N with one line per token budget D (runs sharing D).",
    ),
    FigureSpec(
        "learning_curves",
        "Learning curves",
        fl.fig_learning_curves,
        "Validation loss against optimizer steps for every finished run, coloured by model size.",
    ),
    FigureSpec(
        "isoflop",
        "IsoFLOP curves",
        fa.fig_isoflop,
        "Final loss against N for runs of equal training compute (Hoffmann et al. 2022, Approach 2).",
    ),
    FigureSpec(
        "optimal_allocation",
        "Compute-optimal N and D",
        fa.fig_optimal_allocation,
        "Compute-optimal model size N_opt(C) and tokens D_opt(C) by each of Hoffmann et al.'s approaches the "
        "study supports, against the published Kaplan 2020 (N ~ C^0.73) and Hoffmann 2022 lines.",
    ),
    FigureSpec(
        "noise_scale",
        "Gradient noise scale",
        fb.fig_noise_scale,
        "The simple noise scale B_simple = tr(Sigma)/|G|^2 (tokens) measured during training against the "
        "training loss at the time, with Kaplan 2020's B_crit(L) for comparison (dotted).",
    ),
    FigureSpec(
        "steps_examples",
        "Steps / examples trade-off",
        fb.fig_steps_examples,
        "Optimizer steps against training tokens needed to reach fixed losses, one point per batch size "
        "(McCandlish et al. 2018; Kaplan et al. 2020 eq. 5.1).",
    ),
    FigureSpec(
        "fewshot",
        "Few-shot accuracy",
        fe.fig_fewshot,
        "Few-shot accuracy against model size, one line per number of in-context examples K "
        "(Brown et al. 2020).",
    ),
    FigureSpec(
        "downstream",
        "Downstream accuracy from loss",
        fx.fig_downstream,
        "The OLMo ladder's two steps per task (Bhagia et al. 2024): task loss (nats per byte of the correct "
        "answer) against compute with the fitted L(N, D) (dashed, at the runs' median tokens per parameter), "
        "and accuracy against task loss with the fitted sigmoid (dashed); the star is the predicted target "
        "with its 95 % interval. The fitted curves are drawn without a band (the stored fit keeps no "
        "bootstrap curves).",
    ),
    FigureSpec(
        "repeat",
        "Repeated data",
        fx.fig_repeat,
        "Final loss against epochs over a fixed unique-token subset, per size and subset (Muennighoff et al. "
        "2023).",
    ),
    FigureSpec(
        "residuals",
        "Residuals and back-test",
        fe.fig_residuals,
        "Observed minus fitted loss of the L(N, D) fit for every run.",
    ),
    FigureSpec(
        "shape",
        "Loss vs model shape at fixed N",
        farch.fig_shape,
        "Loss increase of each shape over the best shape of the same N and D, against the aspect ratio "
        "d_model/n_layer (and the feed-forward ratio and head dimension where swept), one line per N "
        "(Kaplan et al. 2020, Fig. 5).",
    ),
    FigureSpec(
        "position_loss",
        "Loss by position in the context",
        farch.fig_position_loss,
        "Left: each run's final validation loss at every token position t of the context, coloured by N, "
        "with L(t) = L_inf + (t/t_c)^-a fitted per run. Right: the fitted power a against N (Kaplan et al. "
        "2020, App. D.5 and Fig. 20).",
    ),
    FigureSpec(
        "lstm_vs_transformer",
        "LSTM vs transformer",
        farch.fig_lstm,
        "Left: final loss against N for transformers and LSTMs, each with a power law in N. Right: loss by "
        "position for the LSTM and the transformer nearest in N (Kaplan et al. 2020, Fig. 7).",
    ),
    FigureSpec(
        "transfer",
        "Transfer to other distributions",
        farch.fig_transfer,
        "Left: final loss on the training distribution's validation split and on each extra evaluation set "
        "against N, with power laws. Right: the offset log(L_other/L_train) per run (Kaplan et al. 2020, "
        "Fig. 8: parallel lines in log-log).",
    ),
]


@dataclass
class ReportResult:
    path: Path
    figures: list[str]
    skipped: dict[str, str]
    timings: dict[str, float]
    fits: dict = field(default_factory=dict)  # key -> FitView (see report.fits.SPECS)
    predictions: object = None  # tables.Predictions
    advice: list[str] = field(default_factory=list)
    exponents: list[dict] = field(default_factory=list)  # N_opt ~ C^a by approach (answer.exponent_rows)
    answer: dict | None = None  # the compute-optimal answer shown (laws.consensus.Consensus.to_dict())
    answer_source: str = ""  # stored by `study fit`, or computed by the report
    context: object = None  # the report.context.Context the figures were drawn from


def _write_figure(fig, name: str, fig_dir: Path, pdf: bool = True) -> bytes:
    """``name.png`` at ``style.PNG_DPI`` (>= 1000 px wide) and, with ``pdf``, the vector ``name.pdf``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=style.PNG_DPI)
    png = buf.getvalue()
    (fig_dir / f"{name}.png").write_bytes(png)
    if pdf:
        fig.savefig(fig_dir / f"{name}.pdf", format="pdf")
    return png


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def render_report(
    data: StudyData, out_dir: Path, *, pdf: bool = True, fit_missing: bool = True
) -> ReportResult:
    """Draw every figure of ``data`` and write ``out_dir/index.html`` and ``out_dir/figures/*.{png,pdf}``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = build_context(data, fit_missing=fit_missing)
    timings = {"fits": time.process_time() - c0}
    c0 = time.process_time()
    ans = get_answer(ctx)  # the one compute-optimal answer every section and figure reads
    timings["answer"] = time.process_time() - c0
    sweep_temps(out_dir.parent)  # what killed builds left (never a live one's)
    with temp_dir(out_dir) as tmp, writing(out_dir):
        fig_dir = tmp / "figures"
        fig_dir.mkdir()
        outs = []
        for spec in FIGURES:
            point("report.figure")
            t = time.process_time()
            try:
                fig = spec.func(ctx)
            except Exception as e:  # one figure's failure (odd data, a laws error) never loses the page
                ctx.skip(spec.name, f"failed: {type(e).__name__}: {e}")
                continue
            if fig is None:
                ctx.skipped.setdefault(spec.name, "no data for it")
                continue
            style.finish(fig)
            png = _write_figure(fig, spec.name, fig_dir, pdf)
            wide = fig.get_figwidth() > style.SIZE[0] + 0.5
            outs.append(
                FigureOut(spec.name, spec.title, spec.caption, png, ctx.notes.get(spec.name, []), wide)
            )
            timings[spec.name] = time.process_time() - t  # CPU seconds: robust to a shared machine
        adv, pred, expo = advice(ctx), predictions(ctx), exponent_rows(ans)
        page = render_page(
            name=data.name,
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            summary=_summary(data),
            advice=adv,
            predictions=pred,
            figures=outs,
            skipped=ctx.skipped,
            fit_rows=fit_rows(ctx),
            answer=ans,
            runs=data.runs,
            n_col=data.n_col,
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
        _fsync_tree(tmp)
        replace_dir(tmp, out_dir)
    timings["total"] = time.perf_counter() - t0
    return ReportResult(
        out_dir / "index.html", [o.name for o in outs], dict(ctx.skipped), timings, ctx.fits, pred, adv, expo,
        ans.result, ans.source, ctx,
    )


def _summary(data: StudyData) -> str:
    counts = data.runs["status"].value_counts().to_dict()
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    conv = "non-embedding (Kaplan)" if data.param_count == "kaplan" else "all parameters (Chinchilla)"
    return (
        f"{len(data.runs)} runs ({parts}); {len(data.metrics)} metrics rows; {len(data.evals)} evaluations. "
        f"N counts {conv} parameters; loss in nats/token; C in FLOPs (6ND)."
    )


def build_report(study_dir: Path, *, pdf: bool = True, param_count: str | None = None) -> Path:
    """Write ``study_dir/report/index.html`` (self-contained) and ``study_dir/report/figures/``; returns the
    HTML path. Reads the study's store; fits missing from the store are computed with scalinglab.laws."""
    study_dir = Path(study_dir)
    data = load_study(study_dir, param_count=param_count)
    return render_report(data, study_dir / "report", pdf=pdf).path
