"""The DDP path (2 gloo processes on CPU) gives the micro-batch path's |G_small|^2 and |G_big|^2."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scalinglab.train.noise_scale import NoiseScaleMeter, attach_ddp_hook

WORLD = 2


def _model() -> torch.nn.Module:
    from scalinglab.model.config import GPTConfig
    from scalinglab.model.gpt import GPT

    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, d_model=32, n_head=2, vocab_size=61, n_ctx=16))


def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 61, (n, 17), generator=torch.Generator().manual_seed(1))
    return x[:, :-1], x[:, 1:]


def _ddp_step(ddp, meter, x, y, n_micro: int) -> None:
    ddp.zero_grad(set_to_none=True)
    meter.begin_step()
    for i, (xm, ym) in enumerate(zip(x.chunk(n_micro), y.chunk(n_micro), strict=True)):
        ctx = ddp.no_sync() if i < n_micro - 1 else torch.enable_grad()
        with ctx:
            (ddp(xm, ym)[1] / n_micro).backward()
        meter.after_micro_backward(ddp.parameters())
    meter.end_step(ddp.parameters())


def _worker(rank: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    # a file rendezvous (no port to race for) and a timeout: a lost peer fails the test instead of hanging it
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        results = {}
        for n_micro in (1, 2):  # 2 sequences per micro-batch per rank; no accumulation, then 2 under no_sync
            ddp = torch.nn.parallel.DistributedDataParallel(_model())  # a DDP model takes one comm hook
            meter = NoiseScaleMeter(b_micro=2, n_micro=n_micro, world_size=WORLD, seq_len=16)
            attach_ddp_hook(ddp, meter)
            x, y = _batch(4 * n_micro)
            rows = slice(rank * 2 * n_micro, (rank + 1) * 2 * n_micro)
            _ddp_step(ddp, meter, x[rows], y[rows], n_micro)
            meter.metrics()
            results[n_micro] = dict(meter.last, grads=[p.grad.clone() for p in ddp.module.parameters()])
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _single_device(n_rows: int, n_micro: int) -> tuple[dict, list[torch.Tensor]]:
    model = _model()
    x, y = _batch(n_rows)
    meter = NoiseScaleMeter(b_micro=n_rows // n_micro, n_micro=n_micro, seq_len=16)
    model.zero_grad(set_to_none=True)
    meter.begin_step()
    for xm, ym in zip(x.chunk(n_micro), y.chunk(n_micro), strict=True):
        (model(xm, ym)[1] / n_micro).backward()
        meter.after_micro_backward(model.parameters())
    meter.end_step(model.parameters())
    return meter.last, [p.grad.clone() for p in model.parameters()]


@pytest.mark.timeout(120)
def test_ddp_hook_matches_micro_batch_path(tmp_path: Path) -> None:
    out = str(tmp_path / "ddp.pt")
    # spawn, not fork: a forked child inherits the state of the threads of the tests run before it in this
    # process (OpenMP, gloo, tokenizers), and a fork-started run of this test was seen to hang
    rendezvous = str(tmp_path / "rendezvous")
    mp.start_processes(_worker, args=(rendezvous, out), nprocs=WORLD, join=True, start_method="spawn")
    ddp = torch.load(out)
    # no accumulation: rank r's 2 rows = micro-batch r of one device; all-reduced = accumulated step
    want, grads = _single_device(n_rows=4, n_micro=2)
    got = ddp[1]
    assert got["sq_norm_small"] == pytest.approx(want["sq_norm_small"], rel=1e-5)
    assert got["sq_norm_big"] == pytest.approx(want["sq_norm_big"], rel=1e-5)
    for a, b in zip(got["grads"], grads, strict=True):  # the hook's all-reduce is DDP's average
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # accumulation under no_sync: B_small = 2 micro-batches of 2 on a rank = half of the 8 rows
    want, _ = _single_device(n_rows=8, n_micro=2)
    got = ddp[2]
    assert got["sq_norm_small"] == pytest.approx(want["sq_norm_small"], rel=1e-5)
    assert got["sq_norm_big"] == pytest.approx(want["sq_norm_big"], rel=1e-5)


def test_attach_needs_a_ddp_model_and_a_ddp_meter() -> None:
    with pytest.raises(TypeError, match="DistributedDataParallel"):
        attach_ddp_hook(torch.nn.Linear(2, 2), NoiseScaleMeter(b_micro=1, n_micro=1, world_size=2))
