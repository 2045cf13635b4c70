"""ensure_dataset caches once (also under a race); the CLI prints the pinned JSON and one-line errors."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalinglab.data import ensure_dataset, open_dataset

SPEC = "math:arith,n=2000,n_test=50"


def _ensure(cache: str, q) -> None:
    q.put(str(ensure_dataset(SPEC, cache_dir=Path(cache))))


def test_ensure_dataset_caches_and_survives_a_race(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ensure, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    paths = {q.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary folder left behind
    mtime = (path / "meta.json").stat().st_mtime_ns
    assert ensure_dataset(SPEC, cache_dir=tmp_path) == path  # a hit: nothing rebuilt
    assert (path / "meta.json").stat().st_mtime_ns == mtime
    assert ensure_dataset(str(path)) == path  # a prepared folder is returned as is
    assert ensure_dataset(SPEC + ",seed=1", cache_dir=tmp_path) != path


def test_default_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path))
    p = ensure_dataset("image:digits8")
    assert p.parent == tmp_path / "data" and open_dataset("image:digits8").path == p


def test_cli_prepare_and_info_json(tmp_path):
    from scalinglab.cli import app

    out = tmp_path / "ds"
    r = CliRunner().invoke(app, ["data", "prepare", SPEC, "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["data", "info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    ds = open_dataset(out)
    assert info["tokens"] == {s: ds.num_tokens(s) for s in ("train", "val", "test")}
    assert info["vocab_size"] == 256 and info["fingerprint"] == ds.fingerprint


def test_cli_errors_are_one_line_exit_2(tmp_path):
    exe = Path(sys.executable).parent / "scalinglab"
    cmd = [str(exe), "data", "prepare", f"text:{tmp_path}/none/*.txt", "--out", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 2 and r.stderr.startswith("error: the glob") and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_a_broken_meta_json_is_a_clear_error(tmp_path):
    from scalinglab.data import open_dataset
    from scalinglab.errors import InputError

    for name, text, expect in (("trunc", '{"vocab_size": 2', "Expecting"), ("empty", "{}", "'vocab_size'")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(text)
        with pytest.raises(InputError, match=f"not a valid dataset description .*{expect}"):
            open_dataset(tmp_path / name)


def test_bad_options_and_paths_are_clear_errors(tmp_path):
    from scalinglab.data import prepare
    from scalinglab.errors import ConfigError, InputError

    (tmp_path / "small.txt").write_text("abc\n" * 10)
    with pytest.raises(ConfigError, match="doc_bytes=0"):  # used to loop forever
        prepare(f"text:{tmp_path / 'small.txt'},doc_bytes=0", tmp_path / "a")
    with pytest.raises(ConfigError, match="dtype='foo'"):
        prepare("math:arith,n=100,dtype=foo", tmp_path / "b")
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match="a part of that path is a file"):
        prepare("math:arith,n=100", tmp_path / "afile" / "x")
