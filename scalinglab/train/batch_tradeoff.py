"""The steps/examples trade-off experiment (McCandlish 2018 Fig. 1, Kaplan 2020 Fig. 11).

One model is trained (through ``scalinglab.train.trainer.train``) at several batch sizes; for shared target
losses we read the steps S each run needed and its examples E = B S, fit (S/S_min - 1)(E/E_min - 1) = 1 per
target (``scalinglab.laws.batch.fit_tradeoff``), and compare B_crit = E_min/S_min with the gradient noise
scale B_simple measured by the same runs at that loss.

Crossing steps come from the training loss smoothed by a *centred* moving average spanning a fixed number
of sequences (no lag, which would bias S by a constant number of steps). B_simple at a target is the ratio of
the summed per-step tr(Sigma) and |G|^2 estimates over the same window; the per-step estimates are
recovered exactly from the logged bias-corrected EMAs (the runs measure and log every step), with each run's
own decay. Units: B and E in sequences (tokens =
sequences * n_ctx), S in optimizer steps, losses in nats/token.

    python -m scalinglab.train.batch_tradeoff OUT_DIR [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.batch import fit_tradeoff

BASE = dict(n_layer=1, d_model=32, n_head=2, n_ctx=32, data="text:default", schedule="constant",
            weight_decay=0.0, grad_clip=1.0, seed=0)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def centred_mean(x: np.ndarray, half: int) -> np.ndarray:
    """Moving average over [i - half, i + half], truncated (and so still centred) at both ends."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    h = np.minimum(np.minimum(i, x.size - 1 - i), half)
    return (c[i + h + 1] - c[i - h]) / (2 * h + 1)


def raw_from_ema(ema: np.ndarray, beta: float) -> np.ndarray:
    """Per-step values x_t from bias-corrected EMAs m_t/(1 - beta^t) logged at every step t = 1, 2, ..."""
    t = np.arange(1, ema.size + 1)
    m = ema * (1.0 - beta**t)
    prev = np.concatenate([[0.0], m[:-1]])
    return (m - beta * prev) / (1.0 - beta)


def per_step_noise(run_dir: Path, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The per-step |G|^2 and tr(Sigma) estimates of a run that measured the noise scale at every step,
    recovered from its logged EMAs with the decay the run itself used (its checkpoint's meter state)."""
    from scalinglab.train.checkpoint import load_checkpoint

    try:
        ema = load_checkpoint(run_dir)["noise_scale"]["ema"]
    except (FileNotFoundError, KeyError, TypeError):
        raise InputError(f"{run_dir}: no noise-scale state in the checkpoint (train with it on)") from None
    n = 0 if ema is None else int(ema["n_updates"])
    if n != len(rows):
        raise InputError(f"{run_dir}: the trade-off analysis needs the noise scale measured at every step "
                         f"(noise_scale_every=1); {n} of {len(rows)} were")
    g2 = np.array([r["gns_g2"] if r["gns_g2"] is not None else np.nan for r in rows])
    tr = np.array([r["gns_trace"] if r["gns_trace"] is not None else np.nan for r in rows])
    return raw_from_ema(g2, float(ema["beta"])), raw_from_ema(tr, float(ema["beta"]))


def crossing(steps: np.ndarray, smooth: np.ndarray, target: float) -> float | None:
    """First (interpolated) step where the smoothed loss falls to ``target``; None if it never does."""
    below = np.nonzero(smooth <= target)[0]
    if below.size == 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(steps[0])
    l0, l1 = smooth[k - 1], smooth[k]
    return float(steps[k - 1] + (steps[k] - steps[k - 1]) * (l0 - target) / (l0 - l1))


def analyse(runs: dict[int, Path], *, window_seqs: int = 64, n_targets: int = 4,
            seq_len: int = 1) -> dict[str, Any]:
    """Targets, per-run crossings, per-target hyperbola fits and B_simple, from finished run folders."""
    curves = {}
    for B, d in sorted(runs.items()):
        rows = [r for r in _rows(d) if r.get("train_loss") is not None]
        steps = np.array([r["step"] for r in rows], dtype=float)
        if not np.array_equal(steps, np.arange(1, steps.size + 1)):
            raise InputError(f"{d}: the trade-off analysis needs a metrics row at every step (log_every=1)")
        half = max(1, round(window_seqs / B / 2))
        loss = centred_mean(np.array([r["train_loss"] for r in rows]), half)
        g2, tr = per_step_noise(d, rows)
        curves[B] = dict(steps=steps, loss=loss, half=half, g2=g2, tr=tr)
    skip = {B: c["loss"][: max(2, c["steps"].size // 10)].max() for B, c in curves.items()}
    hi = min(skip.values())  # every run starts above it
    lo = max(c["loss"].min() for c in curves.values())  # every run reaches it
    if not hi > lo:
        raise InputError(f"the runs share no loss range (highest reached by all {lo:.3f} >= lowest start "
                         f"{hi:.3f}); train longer")
    targets = list(np.linspace(hi - 0.15 * (hi - lo), lo + 0.15 * (hi - lo), n_targets))  # clear of both ends
    out = {"targets": [], "batch_sizes": sorted(runs), "window_seqs": window_seqs, "seq_len": seq_len}
    for L in targets:
        pts = []
        for B, c in curves.items():
            s = crossing(c["steps"], c["loss"], L)
            if s is None:
                continue
            k, h = int(round(s)) - 1, c["half"] * 4
            sl = slice(max(0, k - h), k + h + 1)
            g2, tr = np.nansum(c["g2"][sl]), np.nansum(c["tr"][sl])
            pts.append({"B": B, "S": s, "E": B * s, "b_simple": tr / g2 if g2 > 0 else None})  # sequences
        rec: dict[str, Any] = {"loss": float(L), "runs": pts}
        if len(pts) >= 3:
            f = fit_tradeoff([p["B"] for p in pts], [p["S"] for p in pts])
            bs = [p["b_simple"] for p in pts if p["b_simple"] is not None and p["b_simple"] > 0]
            rec.update(S_min=f["S_min"], E_min=f["E_min"], B_crit=f["B_crit"],
                       hyperbola=f["hyperbola"].tolist(), rel_residuals=f["rel_residuals"].tolist(),
                       b_simple_median=float(np.median(bs)) if bs else None)
        out["targets"].append(rec)
    return out


def run_tradeoff(out_dir: str | Path, *, batch_sizes=(2, 4, 8, 16, 32), steps_term: int = 60,
                 examples_term: int = 400, lr_ref: float = 3e-3, b_ref: int = 8, base: dict | None = None,
                 n_targets: int = 4) -> dict[str, Any]:
    """Train ``base`` at each batch size (sequences) and analyse. Run B gets (steps_term * B + examples_term)
    sequences, enough for both the step-limited small batches and the example-limited large ones; LR scales
    as sqrt(B / b_ref) (Adam); two micro-batches per step so the noise scale is measured."""
    from scalinglab.train.trainer import train

    cfg0 = dict(BASE, **(base or {}))
    out, runs = Path(out_dir), {}
    for B in batch_sizes:
        T = cfg0["n_ctx"]
        seqs = steps_term * B + examples_term
        cfg = dict(cfg0, batch_size=B, micro_batch_size=max(1, B // 2), noise_scale_every=1, tokens=seqs * T,
                   lr=lr_ref * math.sqrt(B / b_ref), log_every=1, eval_every=10**9, eval_batches=1,
                   ckpt_every=10**9, warmup_tokens=5 * B * T)
        train(cfg, out / f"B{B}")
        runs[B] = out / f"B{B}"
    res = analyse(runs, n_targets=n_targets, seq_len=cfg0["n_ctx"])
    res["config"] = {k: v for k, v in cfg0.items()}
    res.update(steps_term=steps_term, examples_term=examples_term, lr_ref=lr_ref, b_ref=b_ref)
    (out / "tradeoff.json").write_text(json.dumps(res, indent=2, default=float))
    try:
        plot(res, out / "tradeoff.png")
    except Exception as e:  # noqa: BLE001  (the numbers are the result; the plot is a convenience)
        print(f"plot skipped: {e}")
    return res


def plot(res: dict[str, Any], path: Path) -> None:
    """S against E per target with the fitted hyperbola (McCandlish Fig. 1 / Kaplan Fig. 11)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for rec in res["targets"]:
        if "S_min" not in rec:
            continue
        S = np.array([p["S"] for p in rec["runs"]])
        E = np.array([p["E"] for p in rec["runs"]])
        (line,) = ax.plot(E, S, "o", label=f"L={rec['loss']:.2f}: B_crit={rec['B_crit']:.3g} seq")
        b = np.geomspace(min(res["batch_sizes"]) / 2, max(res["batch_sizes"]) * 2, 100)
        s = rec["S_min"] + rec["E_min"] / b
        ax.plot(b * s, s, "-", color=line.get_color(), lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("examples E (sequences)")
    ax.set_ylabel("optimizer steps S")
    ax.set_title("(S/S_min - 1)(E/E_min - 1) = 1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description="Steps/examples trade-off experiment (small, CPU).")
    ap.add_argument("out_dir")
    ap.add_argument("--quick", action="store_true", help="3 batch sizes, shorter runs")
    a = ap.parse_args()
    kw = dict(batch_sizes=(2, 8, 32), steps_term=30, examples_term=200) if a.quick else {}
    res = run_tradeoff(a.out_dir, **kw)
    for rec in res["targets"]:
        runs = ", ".join(f"B={p['B']}: S={p['S']:.1f}" for p in rec["runs"])
        if "S_min" in rec:
            T = res["seq_len"]
            bs = rec["b_simple_median"]
            print(f"L={rec['loss']:.3f}  S_min={rec['S_min']:.1f}  E_min={rec['E_min']:.1f} seq  "
                  f"B_crit={rec['B_crit']:.2f} seq = {rec['B_crit'] * T:.0f} tok  "
                  f"B_simple={'n/a' if bs is None else f'{bs:.2f} seq = {bs * T:.0f} tok'}  "
                  f"(S/S_min-1)(E/E_min-1)={np.round(rec['hyperbola'], 2).tolist()}  [{runs}]")
        else:
            print(f"L={rec['loss']:.3f}: fewer than 3 runs reached it [{runs}]")


if __name__ == "__main__":
    main()
