"""`scalinglab plot FIT.json`: a standalone fit drawn from the JSON `scalinglab fit --json` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import scalinglab.cli.report  # noqa: F401  (registers the commands)
from scalinglab.cli._app import _jsonable, app
from scalinglab.errors import InputError
from scalinglab.laws.fit import fit


@pytest.fixture(scope="module")
def power_fit():
    """L(N) = 1.7 + (N/5e4)^-0.3 with 1% noise: a known one-variable law, fitted with a bootstrap."""
    rng = np.random.default_rng(0)
    n = np.geomspace(1e5, 1e9, 12)
    loss = (1.7 + (n / 5e4) ** -0.3) * np.exp(0.01 * rng.standard_normal(n.size))
    res = fit("power+const", {"N": n, "loss": loss}, bootstrap=30, seed=0)
    return res, {"N": n.tolist(), "loss": loss.tolist()}


def test_plot_command(power_fit, tmp_path):
    res, data = power_fit
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(_jsonable({**res.to_dict(samples=True), "data": data})))
    out = CliRunner().invoke(app, ["plot", str(path)])
    assert out.exit_code == 0, out.output
    png = tmp_path / "fit.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in out.output
    out = CliRunner().invoke(app, ["plot", str(path), "--out", str(tmp_path / "f.pdf")])
    assert out.exit_code == 0 and (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"


def test_band_and_points_only_when_stored(power_fit):
    from matplotlib.collections import PathCollection, PolyCollection

    from scalinglab.laws.fit import FitResult
    from scalinglab.report.plot_fit import draw_fit

    res, data = power_fit
    full = draw_fit(
        FitResult.from_dict(res.to_dict(samples=True)), {k: np.asarray(v) for k, v in data.items()}
    )
    bare = draw_fit(FitResult.from_dict(res.to_dict()))
    kinds = [f.axes[0].collections for f in (full, bare)]
    assert any(isinstance(c, PolyCollection) for c in kinds[0]), "no interval band"
    assert any(isinstance(c, PathCollection) for c in kinds[0]), "no data points"
    assert len(kinds[1]) == 0
    # the curve drawn is the fit's own prediction
    line = full.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), res.predict(N=line.get_xdata()))


def test_plot_bad_input(tmp_path):
    from scalinglab.report.plot_fit import plot_fit

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        plot_fit(bad)
    bad.write_text(json.dumps({"params": {"a": 1}}))
    with pytest.raises(InputError, match="missing key"):
        plot_fit(bad)
    with pytest.raises(InputError, match="does not exist"):
        plot_fit(tmp_path / "none.json")


def test_plot_with_the_runs_table(tmp_path):
    """`scalinglab fit --json` output has no points: --data/--col draws them from the runs table."""
    import pandas as pd

    rng = np.random.default_rng(1)
    n = np.geomspace(1e5, 1e9, 10)
    df = pd.DataFrame(
        {"Model Size": n, "loss": (1.7 + (n / 5e4) ** -0.3) * np.exp(0.01 * rng.standard_normal(10))}
    )
    df.to_csv(tmp_path / "runs.csv", index=False)
    res = fit("power+const", df, columns={"N": "Model Size"}, var="N")
    (tmp_path / "fit.json").write_text(json.dumps(_jsonable(res.to_dict())))
    out = CliRunner().invoke(
        app,
        ["plot", str(tmp_path / "fit.json"), "--data", str(tmp_path / "runs.csv"), "--col", "N=Model Size"],
    )
    assert out.exit_code == 0, out.output
    from scalinglab.report.plot_fit import read_points

    pts = read_points(res, tmp_path / "runs.csv", {"N": "Model Size"})
    np.testing.assert_allclose(pts["N"], n)
    np.testing.assert_allclose(pts["loss"], df["loss"])
