"""A synthetic study drawn from a known law, for tests, benchmarks and demos of the report. numpy/pandas only.

Ground truth (loss in nats/token, N = non-embedding parameters ``params_kaplan``, t = tokens seen):

    L(N, t; B) = E + A / N^alpha + Bd / (c_B * t)^beta,   c_B = (1 + B_ref/B_crit) / (1 + B/B_crit)

the Chinchilla form along every learning curve, so the envelope of the curves is the compute frontier of
that law, and the batch factor c_B makes a batch sweep obey McCandlish's trade-off
(S/S_min - 1)(E/E_min - 1) = 1 exactly (c_B = 1 at the reference batch B_ref). The gradient noise scale
follows Kaplan's B_crit(L) = B_star / L^(1/alpha_B) in tokens, times log-normal noise; few-shot accuracy is
a logistic in the loss that rises with the number of shots K.

The study has the shapes a real one has: isoFLOP sets (several N at equal C = 6 N D), a small N x D grid
and a batch sweep. Frames use the column names of the study store (docs/interfaces.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

VOCAB = 512
N_CTX = 256


@dataclass(frozen=True)
class TrueLaw:
    """The law the synthetic losses follow (constants chosen so 1e5..1e8-parameter models look plausible)."""

    E: float = 1.8
    A: float = 40.0
    Bd: float = 125.0
    alpha: float = 0.34
    beta: float = 0.30
    b_star: float = 1.0e7  # tokens, B_crit(L) = b_star / L^(1/alpha_B) (Kaplan form; B_crit(2.9) ~ 6.5e4)
    alpha_b: float = 0.21
    b_ref: int = 16384  # tokens per step of the default runs
    b_crit_sweep: float = 65536.0  # tokens: the B_crit used for the batch factor c_B

    def loss(self, n: np.ndarray, t: np.ndarray, batch_tokens: float | None = None) -> np.ndarray:
        """Loss in nats/token after t tokens at N params (batch_tokens=None: the reference batch)."""
        c = 1.0
        if batch_tokens is not None:
            c = (1 + self.b_ref / self.b_crit_sweep) / (1 + batch_tokens / self.b_crit_sweep)
        return (
            self.E
            + self.A / np.asarray(n, float) ** self.alpha
            + self.Bd / (c * np.asarray(t, float)) ** self.beta
        )

    def n_opt(self, c_flops: np.ndarray) -> np.ndarray:
        """Compute-optimal N for C = 6 N D (Hoffmann's closed form)."""
        g = (self.alpha * self.A / (self.beta * self.Bd)) ** (1 / (self.alpha + self.beta))
        return g * (np.asarray(c_flops, float) / 6) ** (self.beta / (self.alpha + self.beta))

    def b_crit(self, loss: np.ndarray) -> np.ndarray:
        """Critical batch in tokens at a loss (nats/token)."""
        return self.b_star / np.asarray(loss, float) ** (1 / self.alpha_b)


@dataclass
class SyntheticStudy:
    """Frames in the store's shape plus the law they were drawn from."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    evals: pd.DataFrame
    law: TrueLaw
    fits: list[dict] = field(default_factory=list)


SHAPES = [(2, 64), (2, 96), (3, 128), (4, 160), (4, 192), (6, 256), (8, 320), (8, 384), (10, 448), (12, 512)]
BUDGETS = [3e13, 1e14, 3e14, 1e15, 3e15]  # FLOPs of the isoFLOP sets


def _params(n_layer: int, d_model: int) -> tuple[int, int]:
    kaplan = 12 * n_layer * d_model**2
    return kaplan, kaplan + (VOCAB + N_CTX) * d_model


def _plan(n_runs: int) -> list[dict]:
    """isoFLOP sets first (up to 7 N per budget), then an N x D grid, then a batch sweep of 5 runs."""
    plan: list[dict] = []
    sweep = [dict(shape=SHAPES[4], tokens=2.0e7, batch=b) for b in (4096, 8192, 32768, 131072, 524288)]
    grid = [dict(shape=SHAPES[i], tokens=d, batch=None) for i in (1, 3, 5, 7, 9) for d in (4e6, 1.6e7, 6.4e7)]
    iso: list[dict] = []
    for c in BUDGETS:
        cand = [s for s in SHAPES if 2e5 <= c / (6 * _params(*s)[0]) <= 3e9]
        n = np.array([_params(*s)[0] for s in cand], float)
        mid = int(np.argmin(np.abs(np.log(n) - np.log(TrueLaw().n_opt(c)))))
        for s in cand[max(0, mid - 3) : mid + 4]:
            iso.append(dict(shape=s, tokens=c / (6 * _params(*s)[0]), batch=None))
    n_iso = max(0, n_runs - len(sweep) - len(grid)) if n_runs >= 20 else n_runs
    plan = iso[:n_iso] + (grid + sweep if n_runs >= 20 else [])
    return plan[:n_runs]


def synthetic_study(
    n_runs: int = 50,
    *,
    seed: int = 0,
    points_per_run: int = 60,
    noise: float = 0.004,
    evals: bool = True,
    law: TrueLaw | None = None,
) -> SyntheticStudy:
    """Draw a study of ``n_runs`` runs from ``law`` (default ``TrueLaw()``) with seeded noise.

    ``noise`` is the relative (log-normal) noise on each loss value; ``points_per_run`` the number of
    metrics rows per run (log-spaced in steps, every row evaluated).
    """
    law = law or TrueLaw()
    rng = np.random.default_rng(seed)
    run_rows, metric_frames, eval_rows = [], [], []
    for i, spec in enumerate(_plan(n_runs)):
        n_layer, d_model = spec["shape"]
        n_k, n_tot = _params(n_layer, d_model)
        batch = spec["batch"] or law.b_ref
        steps_total = max(8, int(round(spec["tokens"] / batch)))
        tokens_total = steps_total * batch
        steps = np.unique(np.geomspace(1, steps_total, points_per_run).round().astype(int))
        t = steps * float(batch)
        clean = law.loss(n_k, t, None if spec["batch"] is None else batch)
        val = clean * np.exp(noise * rng.standard_normal(len(t)))
        train = clean * np.exp(2 * noise * rng.standard_normal(len(t)))
        bns = law.b_crit(clean) * np.exp(0.15 * rng.standard_normal(len(t)))
        run_id = f"r{i:03d}-L{n_layer}-d{d_model}-b{batch}"
        fpt = 6.0 * n_k
        metric_frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "step": steps,
                    "tokens": t,
                    "flops_6n": fpt * t,
                    "flops_kaplan": (fpt + 6 * n_layer * N_CTX * d_model) * t,
                    "flops_palm": (fpt + 12 * n_layer * N_CTX * d_model) * t,
                    "flops_chinchilla": 6.0 * n_tot * t,
                    "train_loss": train,
                    "val_loss": val,
                    "val_bpb": val / np.log(2),
                    "lr": 3e-3,
                    "grad_norm": 1.0,
                    "tokens_per_s": 1e5,
                    "mfu": 0.3,
                    "gns_g2": np.nan,
                    "gns_trace": np.nan,
                    "gns_b_simple_tokens": bns,
                }
            )
        )
        run_rows.append(
            dict(
                run_id=run_id,
                n_layer=n_layer,
                d_model=d_model,
                n_head=max(1, d_model // 64),
                params_kaplan=n_k,
                params_total=n_tot,
                tokens=tokens_total,
                batch_size_tokens=batch,
                batch_size=batch // N_CTX,
                seed=0,
                status="done",
                final_val_loss=float(val[-1]),
                final_train_loss=float(train[-1]),
                flops_6n=fpt * tokens_total,
                steps=int(steps_total),
            )
        )
        if evals and spec["batch"] is None:
            for task, l0, slope in (("arithmetic.2d+", 3.2, 4.0), ("lambada", 3.6, 2.5)):
                for k in (0, 1, 10):
                    for s in (0, 1):
                        p = 1 / (1 + np.exp(-slope * (l0 + 0.05 * k - val[-1])))
                        acc = float(np.clip(p + 0.02 * rng.standard_normal(), 0, 1))
                        eval_rows.append(
                            dict(
                                run_id=run_id,
                                task=task,
                                shots=k,
                                seed=s,
                                accuracy=acc,
                                scorer="exact_match" if task.startswith("arith") else "acc",
                            )
                        )
    runs = pd.DataFrame(run_rows)
    metrics = pd.concat(metric_frames, ignore_index=True)
    ev = pd.DataFrame(eval_rows, columns=["run_id", "task", "shots", "seed", "accuracy", "scorer"])
    return SyntheticStudy(runs=runs, metrics=metrics, evals=ev, law=law)


def write_store(study: SyntheticStudy, study_dir) -> None:
    """Write a synthetic study into a real study store (``study_dir/scalinglab.db``), as a study run would."""
    from pathlib import Path

    from scalinglab.study.store import Store

    study_dir = Path(study_dir)
    with Store(study_dir) as store:
        specs = []
        for r in study.runs.itertuples():
            cfg = dict(
                n_layer=int(r.n_layer),
                d_model=int(r.d_model),
                n_head=int(r.n_head),
                n_ctx=N_CTX,
                vocab_size=VOCAB,
                tokens=int(r.tokens),
                batch_size=int(r.batch_size),
                lr=3e-3,
                seed=0,
            )
            counts = {
                "params": {"kaplan": int(r.params_kaplan), "total": int(r.params_total)},
                "flops_per_token": {"6n": 6.0 * r.params_kaplan, "chinchilla": 6.0 * r.params_total},
            }
            specs.append((r.run_id, cfg, ["synthetic"], counts))
        store.add_runs(specs)
        metrics = {rid: g for rid, g in study.metrics.groupby("run_id")}
        for r in study.runs.itertuples():
            if r.run_id in metrics:  # a run may have no metrics rows
                store.add_metrics(r.run_id, metrics[r.run_id].drop(columns="run_id").to_dict("records"))
            store.finish_run(
                r.run_id,
                "done",
                {
                    "status": "done",
                    "final_val_loss": r.final_val_loss,
                    "final_train_loss": r.final_train_loss,
                    "steps": int(r.steps),
                    "tokens": int(r.tokens),
                    "batch_size_tokens": int(r.batch_size_tokens),
                },
            )
        for e in study.evals.itertuples():
            store.add_eval(
                e.run_id,
                {
                    "task": e.task,
                    "shots": int(e.shots),
                    "metric": "accuracy",
                    "value": float(e.accuracy),
                    "n": 100,
                    "seed": int(e.seed),
                    "scorer": e.scorer,
                },
            )


# ------------------------------------------------------------------------------------ architecture study


@dataclass(frozen=True)
class TrueArch:
    """The laws the synthetic architecture study follows (Kaplan 2020 Figs. 5, 7, 8, 20).

    Shape: loss = L(N, D) (1 + shape_c ln(r / shape_best)^2) for aspect ratio r, so the range within 3 % is
    shape_best e^(+-sqrt(0.03 / shape_c)). Position t: L(t) = L_inf(N) + (t / t_c)^-a(N), a(N) = a_0 + a_slope
    log10(N / 1e5), L_inf set so the mean over positions is the run's final loss. LSTM: the transformer's
    curve plus lstm_gap (1 - exp(-t / lstm_t)). Transfer: L_other = transfer_ratio L_train."""

    shape_c: float = 0.01
    shape_best: float = 25.0
    t_c: float = 0.5
    a_0: float = 0.35
    a_slope: float = 0.08
    lstm_gap: float = 0.25
    lstm_t: float = 20.0
    transfer_ratio: float = 1.2
    d_tokens: float = 1e9


@dataclass
class SyntheticArchStudy:
    runs: pd.DataFrame
    positions: pd.DataFrame
    eval_sets: pd.DataFrame
    law: TrueLaw
    arch: TrueArch


def synthetic_arch_study(seed: int = 0, *, n_ctx: int = 128, noise: float = 0.002,
                         arch: TrueArch | None = None) -> SyntheticArchStudy:
    """Shape sweeps at two N, transformers and LSTMs over 1.5 decades of N with their loss by position, and a
    transfer set (``text:other``), all drawn from ``TrueArch`` on top of ``TrueLaw`` with seeded noise."""
    law, ta = TrueLaw(), arch or TrueArch()
    rng = np.random.default_rng(seed)
    t = np.arange(1, n_ctx + 1, dtype=float)
    runs, pos, sets = [], [], []

    def run(rid: str, family: str, n: float, n_layer: int, d_model: int, loss: float, roles: list[str],
            curve: np.ndarray | None = None) -> None:
        cfg = {"arch": family, "n_layer": n_layer, "d_model": d_model, "n_ctx": n_ctx}
        if family == "gpt":
            cfg["n_head"] = max(1, d_model // 64)
        runs.append(dict(run_id=rid, status="done", params_kaplan=float(n), params_total=float(n) * 1.1,
                         tokens=ta.d_tokens, batch_size_tokens=2.0**17, final_val_loss=float(loss),
                         roles=json.dumps(roles), config=json.dumps(cfg), n_layer=n_layer, d_model=d_model,
                         n_head=cfg.get("n_head")))
        if curve is not None:
            pos.append(pd.DataFrame({"run_id": rid, "eval_set": "val", "position": t.astype(int),
                                     "loss": curve, "tokens": 1000}))
            other = ta.transfer_ratio * loss * np.exp(noise * rng.standard_normal())
            sets.append(dict(run_id=rid, eval_set="val", loss=float(loss), bpb=float(loss / np.log(2))))
            sets.append(dict(run_id=rid, eval_set="text:other", loss=float(other),
                             bpb=float(other / np.log(2))))

    def jitter(x: np.ndarray | float) -> np.ndarray:
        return np.asarray(x) * np.exp(noise * rng.standard_normal(np.shape(x)))

    for i, n in enumerate(np.geomspace(1e5, 3e6, 5)):
        final = float(law.loss(n, ta.d_tokens))
        a = ta.a_0 + ta.a_slope * np.log10(n / 1e5)
        term = (t / ta.t_c) ** -a
        gpt = jitter(final - term.mean() + term)
        d = int(round((n / 12 / 4) ** 0.5))  # 4 layers
        run(f"gpt{i}", "gpt", n, 4, d, float(gpt.mean()), ["L(N)"], gpt)
        lstm = jitter(gpt + ta.lstm_gap * (1 - np.exp(-t / ta.lstm_t)))
        run(f"lstm{i}", "lstm", n * 1.04, 2, int(round((n / 16) ** 0.5)), float(lstm.mean()), ["L(N)"], lstm)
    for n in (1e6, 4e6):
        for r in (2, 5, 10, 20, 50, 100, 200):
            n_layer = max(1, round((n / (12 * r * r)) ** (1 / 3)))
            d = int(round(r * n_layer))
            loss = float(jitter(law.loss(n, ta.d_tokens) * (1 + ta.shape_c * np.log(r / ta.shape_best) ** 2)))
            run(f"shape{n:.0e}-r{r}", "gpt", n, n_layer, d, loss, [f"shape:aspect@{n:.3g}"])
    return SyntheticArchStudy(pd.DataFrame(runs), pd.concat(pos, ignore_index=True), pd.DataFrame(sets), law,
                              ta)
