"""``scalinglab noise-scale``: the critical batch size B_crit(L) from the noise scale measured in training.

Reads the ``gns_b_simple_tokens`` column of a run's ``metrics.jsonl`` (or of every run of a study, from its
store or its ``runs/*/metrics.jsonl``), pairs it with the training loss of the same row, fits Kaplan's
B_crit(L) = B_star / L^(1/alpha_B) (tokens; L in nats/token) and recommends the batch for a target loss.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from scalinglab.cli._app import app, print_json
from scalinglab.errors import FitError, InputError


def _run_rows(metrics_path: Path) -> list[dict[str, Any]]:
    rows, lines = [], metrics_path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # a torn last line (a killed run): skipped
                break
            raise InputError(f"{metrics_path}: line {i} is not JSON") from None
    return rows


def _seq_len(run_dir: Path) -> int | None:
    cfg = run_dir / "config.json"
    try:
        return int(json.loads(cfg.read_text())["train"]["n_ctx"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def collect_points(
    path: str | Path, skip_frac: float | None = None
) -> tuple[list[dict[str, Any]], list[int]]:
    """(loss, B_simple) points from a run folder or a study folder, and the sequence lengths of the runs.

    Each point: ``run`` (id), ``step``, ``loss`` (train loss, nats/token), ``b_simple`` (tokens). Rows in the
    first ``skip_frac`` of each run are dropped (warm-up; the averages are still filling), and so are rows
    without a positive B_simple (not measured, or no signal yet).
    """
    path = Path(path)
    runs: dict[str, list[dict[str, Any]]] = {}
    seq_lens: list[int] = []
    if (path / "metrics.jsonl").is_file():
        runs[path.name] = _run_rows(path / "metrics.jsonl")
        seq_lens.append(_seq_len(path))
    elif (path / "scalinglab.db").is_file():
        from scalinglab.study.store import Store

        with Store(path) as store:
            frame = store.noise_frame()
        for rid, g in frame.groupby("run_id"):
            runs[str(rid)] = [{"step": s, "train_loss": loss, "gns_b_simple_tokens": b} for s, loss, b in
                              zip(g["step"], g["train_loss"], g["b_simple_tokens"], strict=True)]
            seq_lens.append(_seq_len(path / "runs" / str(rid)))
    elif (path / "runs").is_dir():
        for mp in sorted((path / "runs").glob("*/metrics.jsonl")):
            runs[mp.parent.name] = _run_rows(mp)
            seq_lens.append(_seq_len(mp.parent))
    if not runs:
        raise InputError(f"{path}: neither a run folder (metrics.jsonl) nor a study folder (scalinglab.db or "
                         "runs/*/metrics.jsonl)")
    from scalinglab.laws.batch import WARMUP_FRAC, past_warmup

    frac = WARMUP_FRAC if skip_frac is None else skip_frac
    points = []
    for rid, rows in runs.items():
        last = max((r.get("step") or 0) for r in rows) if rows else 0
        for r in rows:
            b, loss = r.get("gns_b_simple_tokens"), r.get("train_loss")
            ok = b is not None and loss is not None and b == b and loss == loss and b > 0 and loss > 0
            if ok and past_warmup(r.get("step") or 0, last, frac):
                points.append({"run": rid, "step": int(r["step"]), "loss": float(loss), "b_simple": float(b)})
    return points, sorted({s for s in seq_lens if s})


def critical_batch(path: str | Path, target_loss: float | None = None, *, bootstrap: int = 200,
                   skip_frac: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Fit B_crit(L) to the measured noise scale and evaluate it at ``target_loss`` (default: the run's last
    measured training loss; for a study the lowest of the runs' last losses).

    Returns a JSON-able dict: the fit (``B_star`` tokens, ``alpha_B`` with 95 % bootstrap intervals), the
    target loss and the recommended batch ``B_crit_tokens`` (with a 95 % interval for the mean curve) and,
    when all runs share a sequence length, ``B_crit_sequences``.
    """
    import numpy as np

    from scalinglab.laws.fit import fit

    points, seq_lens = collect_points(path, skip_frac)
    if len(points) < 3:
        raise FitError(f"{path}: {len(points)} usable noise-scale measurements (gns_b_simple_tokens > 0 "
                       "with a train loss); need >= 3. Train with noise_scale=True and >= 2 micro-batches "
                       "per step (micro_batch_size < batch_size) or DDP")
    L = np.array([p["loss"] for p in points])
    B = np.array([p["b_simple"] for p in points])
    res = fit("bcrit", {"L": L, "B": B}, bootstrap=bootstrap, seed=seed)
    run_last = {}
    for p in points:  # each run's last measurement; the study's target is the lowest of those losses
        if p["run"] not in run_last or p["step"] > run_last[p["run"]]["step"]:
            run_last[p["run"]] = p
    last = min(run_last.values(), key=lambda p: p["loss"])
    target = float(target_loss) if target_loss is not None else last["loss"]
    if not target > 0:
        raise InputError(f"--target-loss must be positive (nats/token), got {target_loss}")
    b_tok = float(res.predict(L=target))
    out: dict[str, Any] = {
        "source": str(path), "n_points": len(points), "runs": sorted({p["run"] for p in points}),
        "loss_range": [float(L.min()), float(L.max())], "B_star": res.params["B_star"],
        "alpha_B": res.params["alpha_B"], "ci95": res.ci95, "converged": res.converged,
        "warnings": list(res.warnings), "r2_log": res.r2_log, "target_loss": target, "B_crit_tokens": b_tok,
        "B_crit_tokens_ci95": None, "seq_len": seq_lens[0] if len(seq_lens) == 1 else None,
        "B_crit_sequences": b_tok / seq_lens[0] if len(seq_lens) == 1 else None,
        "last_b_simple_tokens": last["b_simple"], "last_loss": last["loss"],
        "extrapolated": not (L.min() <= target <= L.max()), "fit": res.to_dict(),
    }
    if bootstrap:
        lo, hi = res.predict_interval(noise=False, L=target)
        out["B_crit_tokens_ci95"] = [float(lo), float(hi)]
    return out


@app.command("noise-scale")
def noise_scale(
    path: Path = typer.Argument(..., help="A run folder (metrics.jsonl) or a study folder."),
    target_loss: float | None = typer.Option(None, "--target-loss", help="Loss (nats/token) to plan the "
                                             "batch for; default: the last measured training loss."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for the intervals (0 = none)."),
    skip_frac: float = typer.Option(None, help="Drop each run's first fraction of steps (warm-up; default "
                                    "0.1, the rule the study and the report use)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Critical batch size B_crit(L) = B_star / L^(1/alpha_B) from the measured gradient noise scale."""
    r = critical_batch(path, target_loss, bootstrap=bootstrap, skip_frac=skip_frac)
    if as_json:
        print_json(r)
        return

    def ci(name: str) -> str:
        return f"  (95% {r['ci95'][name][0]:.4g} .. {r['ci95'][name][1]:.4g})" if r["ci95"] else ""

    print(f"noise scale: {r['n_points']} measurements from {len(r['runs'])} run(s), "
          f"loss {r['loss_range'][0]:.3f} .. {r['loss_range'][1]:.3f} nats/token")
    print("B_crit(L) = B_star / L^(1/alpha_B)  (Kaplan eq. 1.4; Kaplan's fit: B_star 2.1e8 tokens, "
          "alpha_B 0.21)")
    print(f"  B_star  = {r['B_star']:.4g} tokens{ci('B_star')}")
    print(f"  alpha_B = {r['alpha_B']:.4g}{ci('alpha_B')}")
    print(f"  converged: {'yes' if r['converged'] else 'NO'}   R^2(log) {r['r2_log']:.3f}")
    for w in r["warnings"]:
        print(f"  WARNING: {w}")
    rec = f"{r['B_crit_tokens']:.4g} tokens"
    if r["B_crit_tokens_ci95"]:
        rec += f" (95% {r['B_crit_tokens_ci95'][0]:.4g} .. {r['B_crit_tokens_ci95'][1]:.4g})"
    if r["B_crit_sequences"] is not None:
        rec += f" = {r['B_crit_sequences']:.4g} sequences of {r['seq_len']} tokens"
    print(f"recommended batch at loss {r['target_loss']:.4g}: B_crit = {rec}"
          + ("  [extrapolated beyond the measured losses]" if r["extrapolated"] else ""))
    print(f"last measured B_simple: {r['last_b_simple_tokens']:.4g} tokens at loss {r['last_loss']:.4g}")
    print("(at B = B_crit a run needs 2x the minimum steps and 2x the minimum tokens; Kaplan sec. 5.1)")
