"""The runner: the noise-scale batch rule (pilot runs -> batch sizes), failed runs recorded and retried."""

from __future__ import annotations

import pytest

from scalinglab.study.plan import batch_from_noise, load_plan
from scalinglab.study.runner import run_study, study_status
from scalinglab.study.store import Store

PLAN = """
name = "rules"
[data]
spec = "text:default"
n_ctx = 16
[model]
shapes = [{n_layer = 1, d_model = 16}]
head_dim = 16
[tokens]
absolute = [4096]
[batch]
rule = "noise_scale"
size = 8
pilot_tokens = 4096
min_size = 2
max_size = 64
[fit]
check = "warn"
laws = ["L(N)"]
[train]
eval_batches = 2
log_every = 2
# a run the trainer refuses (vocabulary smaller than the data's): failed, recorded, the study goes on
[[runs]]
n_layer = 1
d_model = 16
tokens = 4096
batch_size = 8
train = {vocab_size = 10}
"""


def test_noise_scale_rule_and_failed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_THREADS", "1")
    plan_path = tmp_path / "rules.toml"
    plan_path.write_text(PLAN)
    lines: list[str] = []
    out = run_study(plan_path, tmp_path / "study", echo=lines.append, report=False)
    text = "\n".join(lines)
    store = Store(tmp_path / "study")
    runs = store.runs_frame()
    pilot = runs[runs["roles"].str.contains("pilot")]
    assert len(pilot) == 1 and pilot["status"].iloc[0] == "done"
    noise = store.noise_frame()
    b = noise[noise["run_id"] == pilot["run_id"].iloc[0]]
    b = b[b["step"] >= b["step"].max() / 2]  # the last half of the pilot, as the runner reads it
    b = b["b_simple_tokens"][b["b_simple_tokens"] > 0]
    assert len(b) > 0, "the pilot measured no noise scale"
    want = batch_from_noise(float(b.median()), load_plan(plan_path))
    main = runs[runs["roles"].str.contains("grid")]
    assert list(main["batch_size"]) == [want] and "noise scale: shape (1, 16)" in text
    failed = runs[runs["roles"].str.contains("extra")]
    assert failed["status"].iloc[0] == "failed" and "vocab" in failed["error"].iloc[0]
    assert out["runs"]["failed"] == 1 and "study finished" in text
    assert study_status(tmp_path / "study")["runs"]["failed"] == 1

    lines.clear()  # a re-run retries the failed run (and only it)
    run_study(plan_path, tmp_path / "study", echo=lines.append, report=False)
    assert any("resuming 1 interrupted or failed run" in x for x in lines)
    assert Store(tmp_path / "study").run(failed["run_id"].iloc[0])["attempts"] == 2


def test_run_study_rejects_a_bad_plan(tmp_path):
    from scalinglab.errors import ConfigError

    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[model]\nshapes = []\n[tokens]\nabsolute = [1]\n')
    with pytest.raises(ConfigError, match="model"):
        run_study(p, tmp_path / "s", echo=lambda s: None, report=False)
    assert not (tmp_path / "s").exists()  # nothing half-written


def test_study_refuses_to_continue_on_changed_data(tmp_path, monkeypatch):
    """A study began on one text file; the file is edited; continuing would mix runs on two datasets."""
    from scalinglab.errors import ConfigError

    monkeypatch.setenv("SCALINGLAB_THREADS", "1")
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps in the warm sun. "
    corpus.write_text(words * 400)
    plan_path = tmp_path / "p.toml"
    plan_path.write_text(
        f'name = "fp"\n[data]\nspec = "text:{corpus}"\nn_ctx = 16\n'
        "[model]\nshapes = [{n_layer = 1, d_model = 16}]\nhead_dim = 16\n"
        "[tokens]\nabsolute = [2048]\n[batch]\nsize = 8\n[fit]\nlaws = []\n"
        "[train]\neval_batches = 1\nlog_every = 4\n"
    )
    study = tmp_path / "study"
    run_study(plan_path, study, echo=lambda s: None, report=False)
    before = Store(study).runs_frame()[["run_id", "status"]]
    assert list(before["status"]) == ["done"]
    fp = Store(study).get_meta("data_fingerprint")

    run_study(plan_path, study, echo=lambda s: None, report=False)  # same data: continues quietly
    assert Store(study).get_meta("data_fingerprint") == fp

    corpus.write_text(words.upper() * 400)  # same size, other content
    edited = tmp_path / "p2.toml"  # and an edited plan: refused, it must not replace the study's study.toml
    edited.write_text(plan_path.read_text().replace("eval_batches = 1", "eval_batches = 2"))
    with pytest.raises(ConfigError, match="changed since this study began"):
        run_study(edited, study, echo=lambda s: None, report=False)
    store = Store(study)
    assert store.get_meta("data_fingerprint") == fp  # nothing was recorded against the new data
    assert (study / "study.toml").read_text() == plan_path.read_text()
    assert store.runs_frame()[["run_id", "status"]].equals(before)


def test_status_eta_counts_parallel_slots_and_running_progress(tmp_path):
    """Four equal runs of 6e9 FLOPs, one done in 10 s (one slot: 6e8 FLOP/s), one running and half-way,
    two pending, on an executor of 2 workers: 6e9 x (0.5 + 2) left over 2 slots at 6e8 -> 12.5 s."""
    import os

    (tmp_path / "study.toml").write_text(
        'name = "eta"\n[model]\nn_params = [1e3]\n[tokens]\nabsolute = [1e6]\n[executor]\nworkers = 2\n'
    )
    counts = {"params": {"kaplan": 1000}, "flops_per_token": {"6n": 6000}}
    with Store(tmp_path) as s:
        s.add_runs([(f"r{i}", {"tokens": 10**6, "seed": i}, ["grid"], counts) for i in range(4)])
        s.set_meta("plan_runs", [f"r{i}" for i in range(4)])
        assert s.claim("r0")
        s.finish_run("r0", "done", {"final_val_loss": 3.0, "steps": 10, "wall_s": 10.0})
        assert s.claim("r1", pid=os.getpid())
        s.add_metrics("r1", [{"step": 5, "tokens": 500_000, "train_loss": 3.5}])
    st = study_status(tmp_path)
    assert st["runs"]["done"] == 1 and st["runs"]["running"] == 1 and st["runs"]["pending"] == 2
    assert st["eta_s"] == pytest.approx(12.5)
