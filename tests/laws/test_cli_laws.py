"""The pinned laws CLI: fit / predict / allocate / presets, JSON shapes, and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ._sim import simulate


def run(monkeypatch, capsys, *args):
    """Call the console entry point in-process: (exit code, stdout, stderr)."""
    from scalinglab.cli._app import main

    monkeypatch.setattr(sys, "argv", ["scalinglab", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    """Chinchilla-form runs with the column names of the Epoch CSV (D absent: derived from C and N)."""
    _, data, _ = simulate("chinchilla", seed=5, n=60)
    df = pd.DataFrame(
        {"Model Size": data["N"], "Training FLOP": 6 * data["N"] * data["D"], "loss": data["loss"]}
    )
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    df.to_csv(path, index=False)
    return path


def test_fit_json_pinned_shape_and_allocate_from_it(monkeypatch, capsys, runs_csv, tmp_path):
    code, out, err = run(
        monkeypatch,
        capsys,
        "fit",
        runs_csv,
        "--law",
        "chinchilla",
        "--col",
        "N=Model Size",
        "--col",
        "C=Training FLOP",
        "--col",
        "loss=loss",
        "--drop-highest",
        "2",
        "--bootstrap",
        "50",
        "--seed",
        "3",
        "--starts",
        "300",
        "--json",
    )
    assert code == 0, err
    d = json.loads(out)
    assert d["law"] == "chinchilla" and d["n_points"] == 58 and d["converged"] is True
    assert set(d["params"]) == {"E", "A", "B", "alpha", "beta"} and d["objective"] > 0
    assert set(d["se"]) == set(d["params"]) and all(len(v) == 2 for v in d["ci95"].values())
    assert any("D = C/(6N)" in n for n in d["notes"])
    fj = tmp_path / "fit.json"
    fj.write_text(out)
    code, out, err = run(monkeypatch, capsys, "allocate", "1e22", "--law", fj, "--json")
    assert code == 0, err
    a = json.loads(out)
    assert 6 * a["N_opt"] * a["D_opt"] == pytest.approx(1e22) and a["loss"] > d["params"]["E"]


def test_fit_table_output_with_units(monkeypatch, capsys, runs_csv):
    code, out, err = run(
        monkeypatch,
        capsys,
        "fit",
        runs_csv,
        "--col",
        "N=Model Size",
        "--col",
        "C=Training FLOP",
        "--starts",
        "200",
    )
    assert code == 0, err
    assert "alpha" in out and "nats/token" in out and "converged" in out and "assumption: D = C/(6N)" in out


def test_predict_and_allocate_presets(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "predict", "kaplan2020-N", "--at", "N=1.5e9", "--json")
    assert code == 0 and json.loads(out)["loss"] == pytest.approx(2.3036, abs=1e-3)
    code, out, _ = run(
        monkeypatch, capsys, "predict", "hoffmann2022", "--at", "N=1e9", "--at", "D=1e10", "--json"
    )
    assert json.loads(out)["loss"] == pytest.approx(1.69 + 406.4 / 1e9**0.34 + 410.7 / 1e10**0.28)
    code, out, _ = run(monkeypatch, capsys, "allocate", "1e24", "--law", "kaplan2020-frontier", "--json")
    a = json.loads(out)
    assert code == 0 and {"N_opt", "D_opt", "loss", "B", "S"} <= set(a)
    code, out, _ = run(monkeypatch, capsys, "allocate", "5.76e23", "--law", "hoffmann2022")
    assert code == 0 and "N_opt" in out and "tokens" in out
    code, out, _ = run(monkeypatch, capsys, "presets")
    assert code == 0 and "besiroglu2024" in out


def _bad(tmp_path, name, df):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


BASE = pd.DataFrame(
    {"N": np.logspace(7, 9, 8), "D": np.logspace(9, 11, 8)[::-1], "loss": np.linspace(3, 2.5, 8)}
)


@pytest.mark.parametrize(
    "case,edit,expect",
    [
        ("missing column", lambda d: d.drop(columns=["D"]), "missing column"),
        (
            "non-numeric",
            lambda d: d.assign(loss=d["loss"].astype(object).where(d.index != 3, "abc")),
            "column 'loss' row 4: 'abc' is not a number",
        ),
        ("nan", lambda d: d.assign(N=d["N"].where(d.index != 2, np.nan)), "column 'N' row 3: missing value"),
        ("inf", lambda d: d.assign(D=d["D"].where(d.index != 5, np.inf)), "column 'D' row 6: infinite"),
        (
            "non-positive",
            lambda d: d.assign(N=d["N"].where(d.index != 0, -5.0)),
            "column 'N' row 1: N must be positive",
        ),
        (
            "zero loss",
            lambda d: d.assign(loss=d["loss"].where(d.index != 7, 0.0)),
            "row 8: loss must be positive",
        ),
        ("too few points", lambda d: d.iloc[:5], "too few points"),
    ],
)
def test_bad_input_is_one_clear_line(monkeypatch, capsys, tmp_path, case, edit, expect):
    path = _bad(tmp_path, "bad.csv", edit(BASE.copy()))
    code, out, err = run(monkeypatch, capsys, "fit", path, "--law", "chinchilla", "--json")
    assert code == 2, (case, out, err)
    lines = [x for x in err.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], (case, err)
    assert out == ""


def test_bad_input_other_commands(monkeypatch, capsys, tmp_path):
    for args, expect in [
        (("predict", "nope2020", "--at", "N=1e9"), "unknown preset"),
        (("predict", "kaplan2020-N", "--at", "N=abc"), "not a number"),
        (("predict", "kaplan2020-N", "--at", "N=-1"), "must be positive"),
        (("allocate", "0", "--law", "hoffmann2022"), "must be positive"),
        (("allocate", "1e20", "--law", tmp_path / "missing.json"), "not found"),
        (("fit", tmp_path / "nothing.csv"), "not found"),
        (("fit", _bad(tmp_path, "ok.csv", BASE), "--col", "N=Nope"), "column 'Nope'"),
        # a misspelt loss column is an error, not a silent fit of the file's 'loss' column
        (("fit", _bad(tmp_path, "ok.csv", BASE), "--col", "loss=los"), "column 'los'"),
        (("fit", _bad(tmp_path, "ok.csv", BASE), "--delta", "0"), "delta=0"),
        (("predict", "kaplan2020-N", "--at", "N=1e9", "--at", "D=1e10"), "is a function of ['N']"),
    ]:
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, (args, err)


def test_subprocess_error_has_no_traceback(tmp_path):
    path = _bad(tmp_path, "nan.csv", BASE.assign(loss=BASE["loss"].where(BASE.index != 1, np.nan)))
    exe = [sys.executable, "-c", "from scalinglab.cli import main; main()"]
    p = subprocess.run(
        [*exe, "fit", str(path), "--law", "chinchilla"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2
    assert (
        "Traceback" not in p.stderr and p.stderr.strip() == "error: column 'loss' row 2: missing value (NaN)"
    )


def test_reads_parquet_and_json_lines(monkeypatch, capsys, tmp_path):
    _, data, _ = simulate("power", seed=4, n=30)
    # 12 significant digits, which both formats hold exactly: the two readers must then give the same fit
    df = pd.DataFrame({k: [float(f"{x:.12g}") for x in v] for k, v in data.items()})
    df.to_parquet(tmp_path / "r.parquet")
    # every digit (pandas' to_json keeps 10): both files then hold the same numbers, and give the same fit
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    fits = []
    for name in ("r.parquet", "r.jsonl"):
        code, out, err = run(
            monkeypatch, capsys, "fit", tmp_path / name, "--law", "power", "--col", "N=N", "--bootstrap",
            "50", "--json"
        )
        assert code == 0, err
        fits.append(json.loads(out))
        (tmp_path / f"{name}.fit.json").write_text(out)
    assert fits[0]["params"]["alpha"] == fits[1]["params"]["alpha"]
    code, out, err = run(
        monkeypatch, capsys, "predict", tmp_path / "r.parquet.fit.json", "--at", "N=1e9", "--json"
    )
    assert code == 0, err
    p = json.loads(out)
    assert p["loss"] == pytest.approx((fits[0]["params"]["N_c"] / 1e9) ** fits[0]["params"]["alpha"])
    assert p["loss_ci"][0] < p["loss_mean_ci"][0] < p["loss"] < p["loss_mean_ci"][1] < p["loss_ci"][1]
    # without a bootstrap a fit predicts nothing a user can act on: refused, with the reason and the fix
    code, out, err = run(monkeypatch, capsys, "fit", tmp_path / "r.parquet", "--law", "power", "--json")
    (tmp_path / "plain.json").write_text(out)
    code, out, err = run(monkeypatch, capsys, "predict", tmp_path / "plain.json", "--at", "N=1e9")
    assert code == 2 and "refused" in err and "--bootstrap" in err and out == ""
    code, out, err = run(monkeypatch, capsys, "predict", tmp_path / "plain.json", "--at", "N=1e9", "--force")
    assert code == 0 and "UNSUPPORTED" in err


def test_fit_isoflop_from_a_table(monkeypatch, capsys, tmp_path):
    """Approach 2 from a CSV (it was `unknown law` at the CLI although laws.allocate.isoflop worked)."""
    from scalinglab.laws import synthetic as S

    N, D, C = S.isoflop_design(S.BESIROGLU, (1e18, 1e19, 1e20, 1e21))
    y = S.observe(S.BESIROGLU, N, D, np.random.default_rng(0))
    pd.DataFrame({"flops": C, "params": N, "loss": y}).to_csv(tmp_path / "iso.csv", index=False)
    args = ("fit", tmp_path / "iso.csv", "--law", "isoflop", "--col", "C=flops", "--col", "N=params")
    code, out, err = run(monkeypatch, capsys, *args, "--bootstrap", "200", "--json")
    assert code == 0, err
    d = json.loads(out)
    a_true = S.BESIROGLU["beta"] / (S.BESIROGLU["alpha"] + S.BESIROGLU["beta"])
    assert d["interval"] == "bootstrap" and d["a_ci95"][0] < a_true < d["a_ci95"][1] and len(d["minima"]) == 4
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0 and "Approach 2" in out and "N_opt =" in out and "delta method" in out


def test_allocate_reads_a_study_fit_document_and_refuses_an_unsupported_fit(monkeypatch, capsys, tmp_path):
    from scalinglab.laws import synthetic as S
    from scalinglab.laws.fit import fit

    N, D, _ = S.isoflop_design(S.BESIROGLU, (1e18, 1e19, 1e20))
    y = S.observe(S.BESIROGLU, N, D, np.random.default_rng(1))
    good = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=60, starts=200).to_dict(samples=True)
    doc = {"fits": [{**good, "law": "L(N,D)"}, {"law": "isoflop", "params": {"a": 0.5, "k": 1.0}}]}
    (tmp_path / "study.json").write_text(json.dumps(doc))
    code, out, err = run(monkeypatch, capsys, "allocate", "1e23", "--law", tmp_path / "study.json", "--json")
    assert code == 0, err
    a = json.loads(out)
    assert a["supported"] and a["N_opt_ci"][0] < a["N_opt"] < a["N_opt_ci"][1] and len(a["a_ci"]) == 2
    code, out, err = run(monkeypatch, capsys, "allocate", "1e23", "--law", tmp_path / "study.json")
    assert code == 0 and "95% interval" in out and "tokens per parameter" in out
    code, out, err = run(monkeypatch, capsys, "predict", tmp_path / "study.json", "--fit", "L(N,D)",
                         "--at", "N=1e9", "--at", "D=2e10", "--json")
    assert code == 0 and len(json.loads(out)["loss_ci"]) == 2, err
    # E pinned at its bound: refused, with the reason, unless --force
    bad = {**good, "at_bound": ["E"], "warnings": ["parameter E is at the lower end of its search range"]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, out, err = run(monkeypatch, capsys, "allocate", "1e23", "--law", tmp_path / "bad.json")
    assert code == 2 and "refused" in err and "E = " in err and "bound" in err and out == ""
    code, out, err = run(monkeypatch, capsys, "allocate", "1e23", "--law", tmp_path / "bad.json", "--force")
    assert code == 0 and "UNSUPPORTED" in out and "UNSUPPORTED" in err
