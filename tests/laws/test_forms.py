"""Forms: analytic Jacobians against finite differences, parameter round trips, predictions, names."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import InputError
from scalinglab.laws import forms

from ._sim import CASES, simulate


@pytest.mark.parametrize("name", list(CASES))
def test_jacobian_matches_finite_differences(name):
    var, truth, ranges, _ = CASES[name]
    form = forms.get_form(name, var=var)
    rng = np.random.default_rng(1)
    logx = {v: np.log(10 ** rng.uniform(lo, hi, 9)) for v, (lo, hi) in ranges.items()}
    theta = form.to_theta(truth)[None, :] * (1 + 0.05 * rng.normal(size=(1, len(form.theta_names))))
    _, J = form.log_eval(theta, logx)
    for i in range(theta.shape[1]):
        h = 1e-6 * max(1.0, abs(theta[0, i]))
        tp, tm = theta.copy(), theta.copy()
        tp[0, i] += h
        tm[0, i] -= h
        fd = (form.log_eval(tp, logx, jac=False) - form.log_eval(tm, logx, jac=False)) / (2 * h)
        np.testing.assert_allclose(J[..., i], fd, rtol=1e-5, atol=1e-7)
    # params -> theta -> params is the identity
    back = form.to_params(form.to_theta(truth))
    for k, v in truth.items():
        assert back[k] == pytest.approx(v, rel=1e-12)


def test_predictions_match_the_written_formulas():
    N, D = np.array([1e8, 1e9]), np.array([1e10, 2e11])
    p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    np.testing.assert_allclose(
        forms.ChinchillaND().predict(p, N=N, D=D), 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28, rtol=1e-12
    )
    k = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    want = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    np.testing.assert_allclose(forms.KaplanND().predict(k, N=N, D=D), want, rtol=1e-12)
    s = {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76}
    np.testing.assert_allclose(
        forms.KaplanNS().predict(s, N=N, S=np.array([1e4, 1e5])),
        (6.5e13 / N) ** 0.077 + (2.1e3 / np.array([1e4, 1e5])) ** 0.76,
        rtol=1e-12,
    )
    b = {"L_inf": 1.0, "b": 3.0, "c0": 0.1, "c1": 0.5, "d1": 1e4, "f1": 0.25}
    x = np.array([10.0, 1e6])
    want = 1.0 + 3.0 * x**-0.1 * (1 + (x / 1e4) ** 4) ** (-0.5 * 0.25)
    np.testing.assert_allclose(forms.BrokenPowerLaw("C").predict(b, C=x), want, rtol=1e-12)
    assert forms.CriticalBatch().predict({"B_star": 2e8, "alpha_B": 0.21}, L=3.0) == pytest.approx(
        1.07e6, rel=0.01
    )
    # D derived from C and N when absent: C = 6ND
    assert forms.ChinchillaND().predict(p, N=1e9, C=6e9 * 2e10) == pytest.approx(
        forms.ChinchillaND().predict(p, N=1e9, D=2e10)
    )


def test_start_grid_is_hoffmanns():
    g = forms.ChinchillaND().start_grid()
    assert g.shape == (4500, 5)
    assert sorted(set(g[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(g[:, 1])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def test_errors():
    with pytest.raises(InputError, match="unknown law"):
        forms.get_form("nope")
    with pytest.raises(InputError, match="needs variable"):
        forms.ChinchillaND().predict({"E": 1, "A": 1, "B": 1, "alpha": 0.3, "beta": 0.3}, N=1e9)
    with pytest.raises(InputError, match="positive"):
        forms.PowerLaw("N").predict({"N_c": 1e13, "alpha": 0.07}, N=-1.0)


@pytest.fixture
def registry():
    """Forms registered by a test are removed afterwards (the registry is global)."""
    before = dict(forms.FORMS)
    yield forms.register_form
    forms.FORMS.clear()
    forms.FORMS.update(before)


def test_a_new_form_is_one_class(registry):
    """A form registered in another module fits, predicts and allocates through every generic path: no
    list elsewhere to extend (a law of N and D without a closed form is allocated numerically; a
    one-variable form takes its variable from the data)."""
    from scalinglab.laws.allocate import allocate
    from scalinglab.laws.fit import fit

    @registry("test-nd-numeric")
    class NoClosedForm(forms.ChinchillaND):
        name = "test-nd-numeric"
        gn_kernel = None  # the general (Jacobian) path
        optimal_split = forms.Form.optimal_split

    @registry("test-power")
    class MyPower(forms.PowerLaw):
        def __init__(self, var: str = "N") -> None:
            super().__init__(var)
            self.name = "test-power"

    form, data, truth = simulate("chinchilla", seed=4, n=120)
    res = fit("test-nd-numeric", data, starts=60, bootstrap=20)
    assert isinstance(res.form, NoClosedForm) and res.converged
    ref = fit("chinchilla", data, starts=60)
    assert res.params["alpha"] == pytest.approx(ref.params["alpha"], rel=1e-4)
    a = allocate(1e21, res)
    assert a.method.startswith("numerical")
    closed = forms.ChinchillaND().optimal_split(1e21, res.params)
    assert a.N_opt == pytest.approx(closed[0], rel=1e-6) and a.D_opt == pytest.approx(closed[1], rel=1e-6)
    _, d1, _ = simulate("power", seed=1, n=80)
    one = fit("test-power", {"D": d1["N"], "loss": d1["loss"]})  # its variable is the only one given: D
    assert one.form.variables == ("D",) and one.converged
    with pytest.raises(ValueError, match="registered twice"):
        registry("test-power")(forms.PowerLaw)


def test_optimal_split_is_the_published_closed_form():
    p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    n, d = forms.ChinchillaND().optimal_split(5.76e23, p)
    assert 6 * n * d == pytest.approx(5.76e23, rel=1e-12)
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert n == pytest.approx(G * (5.76e23 / 6) ** (0.28 / 0.62), rel=1e-12)
    assert forms.ChinchillaND().irreducible(p) == 1.69 and forms.KaplanND().irreducible({}) is None
    assert forms.KaplanND().optimal_split(1e21, {}) is None
    with pytest.raises(InputError, match="alpha"):
        forms.ChinchillaND().optimal_split(1e21, {**p, "alpha": 0.0})
