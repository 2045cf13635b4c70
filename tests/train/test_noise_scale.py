"""NoiseScaleMeter on one device: micro-batch norms, known-truth oracle, no effect on training, bad input."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from scalinglab.train.noise_scale import NoiseScaleMeter


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """A small GPT (2 layers, tied embeddings) as trained by scalinglab."""
    from scalinglab.model.config import GPTConfig
    from scalinglab.model.gpt import GPT

    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, d_model=32, n_head=2, vocab_size=61, n_ctx=16))


def fixed_batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 61, (n, 17), generator=g)
    return x[:, :-1], x[:, 1:]


def direct_sq_norms(model: torch.nn.Module, xs, ys, chunks: int) -> tuple[float, float]:
    """|G_small|^2 (mean over chunks of each chunk's mean-gradient norm) and |G_big|^2, by plain autograd."""
    grads = []
    for x, y in zip(xs.chunk(chunks), ys.chunk(chunks), strict=True):
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        grads.append(torch.cat([p.grad.flatten().double() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    small = sum(float(g @ g) for g in grads) / chunks
    big = torch.stack(grads).mean(0)
    return small, float(big @ big)


def metered_step(model, meter, xs, ys, n_micro: int, divide: bool = True) -> None:
    model.zero_grad(set_to_none=True)
    meter.begin_step()
    for x, y in zip(xs.chunk(n_micro), ys.chunk(n_micro), strict=True):
        loss = model(x, y)[1]
        (loss / n_micro if divide else loss).backward()
        meter.after_micro_backward(model.parameters())
    meter.end_step(model.parameters())


@pytest.mark.parametrize("divide", [True, False])
def test_micro_batch_norms_match_plain_autograd(divide: bool) -> None:
    model = tiny_model()
    xs, ys = fixed_batch(12)
    want_small, want_big = direct_sq_norms(model, xs, ys, chunks=4)
    meter = NoiseScaleMeter(b_micro=3, n_micro=4, seq_len=16, loss_divided_by_n_micro=divide)
    for _ in range(2):  # step 1 reads the first micro-batch from .grad, step 2 goes through the hooks only
        metered_step(model, meter, xs, ys, n_micro=4, divide=divide)
        meter.metrics()
        assert meter.last["sq_norm_small"] == pytest.approx(want_small, rel=1e-5)
        assert meter.last["sq_norm_big"] == pytest.approx(want_big, rel=1e-5)
    m = meter.metrics()
    assert set(m) == {"gns_g2", "gns_trace", "gns_b_simple_tokens"}


def test_unequal_loss_weights_are_undone() -> None:
    """Micro-batches weighted by their share of the tokens (masked data): |g_i|^2 of each micro-batch's
    mean-loss gradient and |sum_i w_i g_i|^2 of the step's gradient."""
    model = tiny_model()
    xs, ys = fixed_batch(6)
    chunks = [(xs[:1], ys[:1]), (xs[1:3], ys[1:3]), (xs[3:], ys[3:])]
    weights = [0.1, 0.3, 0.6]
    grads = []
    for x, y in chunks:
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        grads.append(torch.cat([p.grad.flatten().double() for p in model.parameters()]))
    big = sum(w * g for w, g in zip(weights, grads, strict=True))
    meter = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16)
    model.zero_grad(set_to_none=True)
    meter.begin_step()
    for (x, y), w in zip(chunks, weights, strict=True):
        (model(x, y)[1] * w).backward()
        meter.after_micro_backward(model.parameters(), loss_weight=w)
    meter.end_step(model.parameters())
    assert meter.last["sq_norm_small"] == pytest.approx(sum(float(g @ g) for g in grads) / 3, rel=1e-5)
    assert meter.last["sq_norm_big"] == pytest.approx(float(big @ big), rel=1e-5)


def test_parameters_identical_with_and_without_measurement() -> None:
    final = []
    for measure in (False, True):
        model = tiny_model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        meter = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16) if measure else None
        for step in range(4):
            xs, ys = fixed_batch(6, seed=10 + step)
            opt.zero_grad(set_to_none=True)
            if meter:
                meter.begin_step()
            for x, y in zip(xs.chunk(3), ys.chunk(3), strict=True):
                (model(x, y)[1] / 3).backward()
                if meter:
                    meter.after_micro_backward(model.parameters())
            if meter:
                meter.end_step(model.parameters())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
        final.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*final, strict=True))


class GaussianOracle(torch.nn.Module):
    """Per-example loss 0.5 |w - x_i|^2 with x_i ~ N(mu, diag(s^2)): G = w - mu, tr(Sigma) = sum s^2."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.zeros(dim))
        self.mu = torch.randn(dim, generator=g) * 0.6
        self.s = torch.rand(dim, generator=g) + 0.5

    def forward(self, n: int, g: torch.Generator) -> torch.Tensor:
        x = self.mu + self.s * torch.randn(n, self.mu.numel(), generator=g)
        return 0.5 * ((self.w - x) ** 2).sum(1).mean()


@pytest.mark.parametrize("b_micro,n_micro", [(1, 2), (4, 3), (16, 2)])
def test_meter_recovers_known_noise_scale(b_micro: int, n_micro: int) -> None:
    oracle = GaussianOracle(dim=64)
    g2_true = float((oracle.w - oracle.mu).detach().pow(2).sum())
    trace_true = float(oracle.s.pow(2).sum())
    meter = NoiseScaleMeter(b_micro=b_micro, n_micro=n_micro, seq_len=8, beta=0.999)
    gen = torch.Generator().manual_seed(1)
    for _ in range(800):
        oracle.zero_grad(set_to_none=True)
        meter.begin_step()
        for _ in range(n_micro):
            (oracle(b_micro, gen) / n_micro).backward()
            meter.after_micro_backward(oracle.parameters())
        meter.end_step(oracle.parameters(), report=False)
    m = meter.metrics()
    assert m["gns_g2"] == pytest.approx(g2_true, rel=0.05)
    assert m["gns_trace"] == pytest.approx(trace_true, rel=0.05)
    assert m["gns_b_simple_tokens"] == pytest.approx(8 * trace_true / g2_true, rel=0.05)


def test_single_micro_batch_warns_once_and_reports_none() -> None:
    model = tiny_model()
    xs, ys = fixed_batch(4)
    with pytest.warns(UserWarning, match=">= 2 micro-batches"):
        meter = NoiseScaleMeter(b_micro=4, n_micro=1, seq_len=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no exception
        metered_step(model, meter, xs, ys, n_micro=1)
        assert meter.metrics() == {"gns_g2": None, "gns_trace": None, "gns_b_simple_tokens": None}
        assert meter.end_step(model.parameters()) is None


def test_zero_gradient_gives_none_not_a_division_by_zero() -> None:
    model = tiny_model()
    meter = NoiseScaleMeter(b_micro=2, n_micro=2, seq_len=16)
    xs, ys = fixed_batch(4)
    model.zero_grad(set_to_none=True)
    meter.begin_step()
    for x in xs.chunk(2):
        (0.0 * model(x)[0].sum()).backward()
        meter.after_micro_backward(model.parameters())
    with pytest.warns(UserWarning, match="gradient is exactly zero"):
        m = meter.end_step(model.parameters())
    assert m["gns_b_simple_tokens"] is None and m["gns_g2"] == 0.0


def test_wrong_number_of_micro_batches_is_a_clear_error() -> None:
    model = tiny_model()
    meter = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16)
    xs, ys = fixed_batch(4)
    with pytest.raises(RuntimeError, match="expected 3 after_micro_backward calls"):
        metered_step(model, meter, xs, ys, n_micro=2)
    with pytest.raises(ValueError, match="b_micro must be a positive integer"):
        NoiseScaleMeter(b_micro=0, n_micro=2)


def test_state_dict_resume_continues_the_same_averages() -> None:
    model = tiny_model()
    batches = [fixed_batch(6, seed=s) for s in range(6)]
    full = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16, beta=0.9)
    for xs, ys in batches:
        metered_step(model, full, xs, ys, n_micro=3)
    first = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16, beta=0.9)
    for xs, ys in batches[:3]:
        metered_step(model, first, xs, ys, n_micro=3)
    first.close()
    resumed = NoiseScaleMeter(b_micro=2, n_micro=3, seq_len=16, beta=0.9)
    resumed.load_state_dict(first.state_dict())
    for xs, ys in batches[3:]:
        metered_step(model, resumed, xs, ys, n_micro=3)
    a, b = full.metrics(), resumed.metrics()
    for k in a:
        assert (a[k] is None and b[k] is None) or math.isclose(a[k], b[k], rel_tol=1e-9)


def test_trainer_parameters_identical_with_and_without_noise_scale(tmp_path) -> None:
    from scalinglab.train.checkpoint import load_checkpoint
    from scalinglab.train.trainer import train

    states = []
    for on in (False, True):
        cfg = dict(n_layer=1, d_model=16, n_head=2, n_ctx=16, data="text:default", tokens=8 * 16 * 4,
                   batch_size=8, micro_batch_size=2, lr=1e-2, log_every=1, eval_every=10**6, eval_batches=1,
                   noise_scale=on)
        train(cfg, tmp_path / f"ns{on}")
        states.append(load_checkpoint(tmp_path / f"ns{on}")["model"])
        rows = [json.loads(x) for x in (tmp_path / f"ns{on}" / "metrics.jsonl").read_text().splitlines()]
        assert any(r["gns_g2"] is not None for r in rows) == on
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
