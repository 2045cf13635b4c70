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


def _resume_worker(rank: int, rendezvous: str, data: str, out: str) -> None:
    from scalinglab.train.trainer import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        cfg = dict(n_layer=2, d_model=32, n_head=2, n_ctx=32, data=data, tokens=8 * 32 * 10, batch_size=8,
                   micro_batch_size=4, lr=3e-3, log_every=1, eval_every=5, eval_batches=1, ckpt_every=100,
                   seed=3)
        train(cfg, f"{out}/whole")
        assert train(cfg, f"{out}/resumed", should_stop=lambda step: step == 4)["status"] == "stopped"
        train(cfg, f"{out}/resumed", resume=True)  # a new DDP model: its buckets are laid out afresh
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ddp_resume_gives_bit_identical_noise_scale(tmp_path: Path, text_data: str) -> None:
    """A 2-rank run stopped at step 4 and resumed logs exactly the gns_* of the uninterrupted run. It did not
    when the norms were summed bucket by bucket: DDP rebuilds its buckets after a process's first step, so the
    resumed process's step 5 summed the same gradients in another order (relative differences ~1e-6)."""
    import json

    mp.start_processes(_resume_worker, args=(str(tmp_path / "rendezvous"), text_data, str(tmp_path)),
                       nprocs=WORLD, join=True, start_method="spawn")

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    whole, resumed = rows("whole"), rows("resumed")
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == list(range(1, 11))
    keys = ("train_loss", "gns_g2", "gns_trace", "gns_b_simple_tokens")
    assert all(whole[-1][k] is not None for k in keys)
    for a, b in zip(whole, resumed, strict=True):
        assert [b[k] for k in keys] == [a[k] for k in keys], a["step"]  # bit-exact, not approx
