"""Benchmark: the full-grid Chinchilla fit and a 4,000-resample bootstrap on the Epoch data.

Reference, measured in the same run: a plain scipy L-BFGS-B loop (default tolerances, analytic gradient,
summed Huber) over the same 4,500 Hoffmann starts. Only a fixed sample of that loop is timed (every k-th
start) and scaled to 4,500; the loop's best over the sample must match our optimum (else exit 1: a
correctness failure). Each side is timed in wall-clock seconds and in CPU seconds of this process
(``time.process_time``: all its threads); on a shared machine the CPU ratio is the one that load does not
distort (ours runs SCALINGLAB_THREADS threads, default 2, the reference one).

Also timed: the whole process ``scalinglab fit`` on the same file (start-up, imports, reading, fit, printing)
against the same reference, and, when the PyPI ``chinchilla`` package is installed (bench only, not a
dependency: ``pip install chinchilla``), that package's fit: its own objective
(``Chinchilla._evaluate_params``:
mean log-Huber, delta 1e-3 here, in long double) minimised with its own optimiser call
(``scipy.optimize.minimize(method=Chinchilla.algorithm)``, BFGS), start by start as ``Chinchilla.fit`` does,
on every k-th start of the same grid, in this process (``Chinchilla.fit`` itself spreads the starts over a
process pool of all cores and draws figures; neither is timed here).

    python bench/bench_laws_fit.py [--sample-every 15] [--boot 4000] [--chinchilla-every 150]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from scalinglab.laws import optim
from scalinglab.laws.data import read_table
from scalinglab.laws.fit import fit
from scalinglab.laws.forms import ChinchillaND

DATA = Path(os.environ.get("SCALINGLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
COLS = {"N": "Model Size", "C": "Training FLOP"}


class Clock:
    """Wall-clock and CPU seconds (this process, all threads) of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def whole_process(path: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its output) of ``scalinglab fit`` on ``path`` (what the console script
    runs: ``scalinglab.cli.main``)."""
    cmd = [sys.executable, "-c", "from scalinglab.cli import main; main()", "fit", str(path),
           "--law", "chinchilla", "--col", "N=Model Size", "--col", "C=Training FLOP", "--col", "loss=loss",
           "--drop-highest", "5"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"scalinglab fit failed: {out.stderr[-500:]}")
    return wall, cpu, out.stdout


def chinchilla_package(d, every: int, ours_f: float, logx, logy, form) -> None:
    """The PyPI chinchilla package's fit on every ``every``-th start of Hoffmann's grid (module docstring);
    returns (wall s, CPU s) scaled to the whole grid, or None when the package is not installed."""
    from importlib.metadata import version

    try:
        import chinchilla
        from chinchilla._metrics import log_huber
    except ImportError:
        print("chinchilla package: skipped (not installed; `pip install chinchilla` to compare)")
        return
    import pandas as pd

    grid = {"e": tuple(np.arange(-1, 1.01, 0.5)), "a": tuple(np.arange(0, 25.01, 5.0)),
            "b": tuple(np.arange(0, 25.01, 5.0)), "alpha": tuple(np.arange(0, 2.01, 0.5)),
            "beta": tuple(np.arange(0, 2.01, 0.5))}  # the same 4,500 starts (its log-scale keys e, a, b)
    N = d["Model Size"].to_numpy(float)
    C = d["Training FLOP"].to_numpy(float)
    with tempfile.TemporaryDirectory() as proj:
        pd.DataFrame({"C": C, "N": N, "D": C / (6 * N), "loss": d["loss"].to_numpy(float)}).to_csv(
            Path(proj) / "df.csv", index=False
        )
        loss = functools.partial(log_huber, delta=1e-3)
        cc = chinchilla.Chinchilla(proj, param_grid=grid, loss_fn=loss, log_level=40)
        # what Chinchilla.fit sets up before its per-start loop
        df, dt = cc.database.df, chinchilla.core.DTYPE
        cc._const = dict(log_N=np.log(df.N.values.astype(dt)), log_D=np.log(df.D.values.astype(dt)),
                         y_true=df.loss.values.astype(dt), weights=None)
        cc._autoscale_range = np.array(list(map(np.ptp, grid.values())))
        starts = np.array(list(itertools.product(*grid.values())))
        sample = starts[::every]
        best, nfev = None, 0
        with Clock() as ck, optim.blas_single_thread():
            for x0 in sample / cc._autoscale_range:
                r = minimize(cc._evaluate_params, x0, method=cc.algorithm)
                nfev += r.nfev
                if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
                    best = r
    scale = len(starts) / len(sample)
    e, a, b, al, be = best.x * cc._autoscale_range
    theta = np.array([e, a, b, al, be])
    f_sum = float(optim.objective(form, theta[None, :], logx, logy, 1e-3)[0])
    p = form.to_params(theta)
    print(
        f"chinchilla {version('chinchilla')} package (BFGS, mean log-Huber, long double): "
        f"{len(sample)} of {len(starts)} starts in {ck.wall:.1f} s wall / {ck.cpu:.1f} s CPU -> "
        f"{ck.wall * scale:.0f} s / {ck.cpu * scale:.0f} s for all; {nfev / len(sample):.0f} evaluations per "
        f"start;\n  its best: E {p['E']:.4f} A {p['A']:.1f} B {p['B']:.0f} alpha {p['alpha']:.4f} "
        f"beta {p['beta']:.4f}; summed Huber there {f_sum:.7e} (ours {ours_f:.7e}, "
        f"rel {f_sum / ours_f - 1:+.1e})"
    )
    return ck.wall * scale, ck.cpu * scale


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample-every", type=int, default=15)
    ap.add_argument("--boot", type=int, default=4000)
    ap.add_argument("--chinchilla-every", type=int, default=150, help="0: skip the chinchilla package")
    args = ap.parse_args()
    path = DATA / "chinchilla_epoch_svg_extracted.csv"
    if not path.is_file():
        print(f"skip: {path} not found")
        return 0
    df = read_table(path)
    load = os.getloadavg()
    print(
        f"threads (SCALINGLAB_THREADS): {os.environ.get('SCALINGLAB_THREADS', '2')}, cpus: {os.cpu_count()}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )

    # the reference loop, on the same data and the same objective/gradient code
    d = df.sort_values("loss", kind="stable").iloc[:-5]
    N = d["Model Size"].to_numpy(float)
    C = d["Training FLOP"].to_numpy(float)
    logx = {"N": np.log(N), "D": np.log(C / (6 * N))}
    logy = np.log(d["loss"].to_numpy(float))
    form = ChinchillaND()
    grid = form.start_grid()
    sample = grid[:: args.sample_every]

    def fun(th):
        with np.errstate(over="ignore", invalid="ignore"):
            f, g = optim.gradient(form, th, logx, logy, 1e-3)
        return (f, g) if np.isfinite(f) else (1e300, np.zeros_like(th))

    fit("chinchilla", df, columns=COLS, drop_highest=5, starts=20)  # warm-up (thread pool, caches)
    fs, xs, nfev, ref_wall, ref_cpu, ours = [], [], 0, 0.0, 0.0, []
    # interleaved (ours, half the reference sample, ours, the other half) so that load drift on a shared
    # machine hits both sides alike
    for part in (sample[0::2], sample[1::2]):
        with Clock() as ck:
            res = fit("chinchilla", df, columns=COLS, drop_highest=5)
        ours.append(ck)
        print(
            f"ours: full grid ({res.n_starts} starts) in {ck.wall:.2f} s wall / {ck.cpu:.2f} s CPU, "
            f"objective {res.objective:.7e}, {res.n_at_optimum} starts at the optimum, "
            f"converged={res.converged}"
        )
        with Clock() as ck, optim.blas_single_thread():  # the reference's best case: no BLAS threads
            for th in part:
                r = minimize(fun, th, jac=True, method="L-BFGS-B")
                fs.append(r.fun)
                xs.append(r.x)
                nfev += r.nfev
        ref_wall += ck.wall
        ref_cpu += ck.cpu
    scale = len(grid) / len(sample)
    fs = np.array(fs)
    best = int(np.argmin(fs))
    frac = float(np.mean(fs <= fs[best] * (1 + 1e-6)))
    print(
        f"scipy loop: {len(sample)} of {len(grid)} starts in {ref_wall:.2f} s wall / {ref_cpu:.2f} s CPU -> "
        f"{ref_wall * scale:.1f} s / {ref_cpu * scale:.1f} s for all; {nfev / len(sample):.0f} evaluations "
        f"per start; best {fs[best]:.7e}; {100 * frac:.1f}% of sampled starts within 1e-6 of it"
    )
    ref_params = form.to_params(xs[best])
    rel = max(abs(ref_params[k] / res.params[k] - 1) for k in res.params)
    wall, cpu = float(np.mean([o.wall for o in ours])), float(np.mean([o.cpu for o in ours]))
    print(
        f"speed-up: {ref_wall * scale / wall:.1f}x wall, {ref_cpu * scale / cpu:.1f}x CPU (goal >= 20x; ours "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU, mean of 2); same optimum: objective rel diff "
        f"{abs(fs[best] / res.objective - 1):.1e}, max param rel diff {rel:.1e}"
    )
    ok = res.objective <= fs[best] * (1 + 1e-7) and rel < 1e-3

    p_wall, p_cpu, out = whole_process(path)
    same = f"{res.params['alpha']:.6g}" in out and f"{res.params['E']:.6g}" in out
    print(
        f"whole process `scalinglab fit` (start-up included): {p_wall:.2f} s wall / {p_cpu:.2f} s CPU -> "
        f"{ref_wall * scale / p_wall:.1f}x wall, {ref_cpu * scale / p_cpu:.1f}x CPU (goal >= 15x); "
        f"prints the same parameters: {'yes' if same else 'NO'}"
    )
    ok &= same

    if args.chinchilla_every:
        pkg = chinchilla_package(d, args.chinchilla_every, res.objective, logx, logy, form)
        if pkg:
            print(f"  ours vs the chinchilla package: {pkg[0] / wall:.0f}x wall, {pkg[1] / cpu:.0f}x CPU "
                  "(goal >= 50x)")

    with Clock() as ck:
        rb = fit(
            "chinchilla", df, columns=COLS, drop_highest=5, starts=[res.params], bootstrap=args.boot, seed=42
        )
    print(f"bootstrap: {args.boot} resamples in {ck.wall:.1f} s wall / {ck.cpu:.1f} s CPU (goal < 60 s)")
    for k in ("E", "A", "B", "alpha", "beta"):
        lo, hi = rb.ci95[k]
        print(f"  {k:>5} {rb.params[k]:10.4f}  SE {rb.se[k]:9.4f}  95% [{lo:.4f}, {hi:.4f}]")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if not ok:
        print("CORRECTNESS FAILURE: the scipy loop found another optimum, or the CLI printed other numbers")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
