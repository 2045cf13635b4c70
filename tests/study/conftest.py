"""Real engines for the executor tests, started once per session: a Ray cluster (`ray start --head`, bound to
127.0.0.1) and a single-node Slurm (scripts/slurm_local.sh: munged, slurmctld, slurmd), each in a private
folder under /tmp and stopped at the end of the session. Where an engine cannot be had the tests that need it
are skipped with the reason printed; in CI (CI=true, as root) that is a failure instead."""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "scalinglab")


def pytest_collection_modifyitems(session, config, items):
    """The time-limit tests wait for Slurm jobs that run (asleep) for a minute or two from the first Slurm
    test on: they go last in the session, so that everything else runs meanwhile."""
    late = [i for i in items if i.name.startswith("test_slurm_time_limit")]
    items[:] = [i for i in items if i not in late] + late


def skip_or_fail(reason: str) -> None:
    """Skip with the reason printed; where CI=true and we are root (so .ci/run installed the engine), fail."""
    if os.environ.get("CI", "").lower() == "true" and os.geteuid() == 0:
        pytest.fail(f"{reason}; in CI (CI=true, root) this test must run: .ci/run installs it")
    print(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------- plans


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


# Three runs, one per shape (N from 3k to 55k: 1.3 decades), ~64 steps each: an L(N) fit from seconds of CPU
SHAPES3 = [{"n_layer": 1, "d_model": 16}, {"n_layer": 1, "d_model": 32}, {"n_layer": 2, "d_model": 48}]


def write_plan(
    path: Path,
    executor: dict,
    shapes=SHAPES3,
    tokens: int = 8192,
    n_ctx: int = 16,
    batch: dict | None = None,
    train: dict | None = None,
    laws=("L(N)",),
) -> Path:
    """A study.toml: `shapes` x one token budget, fixed lr, the given executor table."""
    tr = {"eval_batches": 2, "log_every": 4, "eval_every": 32, "ckpt_every": 8, **(train or {})}
    lines = [
        'name = "cluster"',
        "[data]",
        'spec = "text:default"',
        f"n_ctx = {n_ctx}",
        "[model]",
        f"shapes = {_toml(shapes)}",
        "head_dim = 16",
        "[tokens]",
        f"absolute = [{tokens}]",
        "[batch]",
        *(f"{k} = {_toml(v)}" for k, v in (batch or {"size": 8}).items()),
        "[lr]",
        'rule = "fixed"',
        "value = 3e-3",
        "[fit]",
        f"laws = {_toml(list(laws))}",
        "[train]",
        *(f"{k} = {_toml(v)}" for k, v in tr.items()),
        "[executor]",
        *(f"{k} = {_toml(v)}" for k, v in executor.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def study(plan: Path, out: Path, echo=None) -> dict:
    """`study run` in this process (no report); the run_study result, its log lines under "lines"
    (each also given to ``echo``)."""
    from scalinglab.study.runner import run_study

    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        if echo is not None:
            echo(line)

    res = run_study(plan, out, echo=keep, report=False)
    return {**res, "lines": lines}


def start_cli(plan: Path, out: Path, env: dict | None = None, log: str = "cli.log", **extra: str):
    """`scalinglab study run` as a child process (its own session; environment ``env`` or ours, plus
    ``extra``), its output in out/<log> (the Popen's `log_path`)."""
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / log, "w")  # noqa: SIM115 (closed with the process)
    p = subprocess.Popen(
        [CLI, "study", "run", str(plan), "--out", str(out), "--no-report"],
        env={**(os.environ if env is None else env), **extra},
        stdout=f,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    p.log_path = out / log
    return p


def wait_cli(p: subprocess.Popen, timeout: float = 240.0) -> str:
    """Wait for a `start_cli` process (killed past ``timeout``); its output."""
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
        raise AssertionError(f"study run did not finish in {timeout} s:\n{p.log_path.read_text()}") from None
    return p.log_path.read_text()


def fit_params(store) -> dict[str, dict]:
    return {f["law"]: f["result"]["params"] for f in store.fits()}


@pytest.fixture(scope="session")
def local_baseline(tmp_path_factory) -> dict:
    """The 3-run study trained in this process by the local executor: what every engine must reproduce."""
    from scalinglab.study.store import Store

    d = tmp_path_factory.mktemp("local")
    res = study(write_plan(d / "study.toml", {"kind": "local", "workers": 0, "threads_per_run": 1}), d / "s")
    assert res["runs"]["done"] == 3, res["lines"]
    store = Store(d / "s")
    runs = store.runs_frame()
    return {
        "dir": d / "s",
        "fits": fit_params(store),
        "loss": dict(zip(runs["run_id"], runs["final_val_loss"], strict=True)),
        "metrics": store.metrics_frame(),
    }


def assert_same_study(store, baseline: dict) -> None:
    """Same runs, same final losses, same metrics rows (one per step, none twice), same fits."""
    runs = store.runs_frame()
    assert sorted(runs["status"]) == ["done"] * 3, list(runs["error"])
    got = dict(zip(runs["run_id"], runs["final_val_loss"], strict=True))
    assert got.keys() == baseline["loss"].keys()
    for rid, loss in baseline["loss"].items():
        assert got[rid] == pytest.approx(loss, rel=1e-6), rid
    m, b = store.metrics_frame(), baseline["metrics"]
    assert not m.duplicated(["run_id", "step"]).any() and len(m) == len(b)
    assert list(zip(m["run_id"], m["step"], strict=True)) == list(zip(b["run_id"], b["step"], strict=True))
    assert m["train_loss"].to_numpy() == pytest.approx(b["train_loss"].to_numpy(), rel=1e-6)
    fits = fit_params(store)
    assert fits.keys() == baseline["fits"].keys() == {"L(N)"}
    for law, params in baseline["fits"].items():
        assert fits[law] == pytest.approx(params, rel=1e-9), law


# --------------------------------------------------------------------------------------- sockets


def _proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(*roots: int) -> set[int]:
    """``roots`` and all their descendants."""
    kids, out, todo = _proc_children(), set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += kids.get(p, [])
    return out


def session_pids(sid: int) -> set[int]:
    """The processes of session ``sid`` (a child started with start_new_session=True, and what it began)."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(d)) == sid:
                    out.add(int(d))
    return out


def env_pids(key: str, value: str) -> set[int]:
    """The processes whose environment holds ``key=value`` (daemons and the jobs they start, wherever they
    were re-parented to)."""
    want, out = f"{key}={value}".encode(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if want in Path(f"/proc/{d}/environ").read_bytes().split(b"\0"):
                    out.add(int(d))
    return out


def _addr(hexaddr: str) -> str:
    h, _ = hexaddr.split(":")
    raw = bytes.fromhex(h)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    a = ipaddress.IPv6Address(words)
    return str(a.ipv4_mapped or a)


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket the processes ``pids`` hold."""
    owner = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        owner[int(link[8:-1])] = pid
    out = []
    for fam in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{fam}").read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[9]) in owner:
                    out.append((_addr(f[1]), int(f[1].split(":")[1], 16), owner[int(f[9])]))
    return out


def assert_loopback_only(socks: list[tuple[str, int, int]]) -> None:
    bad = [s for s in socks if not ipaddress.ip_address(s[0]).is_loopback]
    assert not bad, f"listening beyond loopback (address, port, pid): {bad}"


# ------------------------------------------------------------------------------------------ ray


class RayCluster:
    def __init__(self, proc: subprocess.Popen, address: str, temp_dir: str):
        self.proc, self.address, self.temp_dir = proc, address, temp_dir

    def pids(self) -> set[int]:
        return session_pids(self.proc.pid)


@pytest.fixture(scope="session")
def ray_installed() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        skip_or_fail('ray is not installed (pip install "scalinglab[ray]"); the Ray tests are skipped')


@pytest.fixture(scope="session")
def ray_cluster(ray_installed):
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs and a private temp dir; every Ray worker sleeps
    SCALINGLAB_RUN_STEP_SLEEP = 0.03 s after each training step, so a run lasts long enough to be killed."""
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="slray", dir="/tmp")  # short: unix socket paths must stay < 108 chars
    port = free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "SCALINGLAB_RUN_STEP_SLEEP": "0.03"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp) / "ray_start.log", "w")  # noqa: SIM115
    cmd = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = RayCluster(proc, f"127.0.0.1:{port}", temp)
    try:
        t0 = time.time()
        while "Ray runtime started" not in (Path(temp) / "ray_start.log").read_text():
            if proc.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"ray start failed:\n{(Path(temp) / 'ray_start.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield cluster
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3)
        for pid in cluster.pids() | {proc.pid}:  # what is left of this session: by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- slurm

SLURM_SCRIPT = REPO / "scripts" / "slurm_local.sh"


class SlurmCluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"

    def pids(self) -> set[int]:
        """The daemons, and every process of every job (they all carry this cluster's SLURM_CONF)."""
        return self.daemon_pids() | env_pids("SLURM_CONF", str(self.conf))

    def daemon_pids(self) -> set[int]:
        out = set()
        for name in ("munged", "slurmctld", "slurmd"):
            with contextlib.suppress(OSError, ValueError):
                out.add(int((self.folder / "run" / f"{name}.pid").read_text()))
        return out

    def run(self, *cmd: str, check: bool = True) -> str:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "SLURM_CONF": str(self.conf)}
        )
        if check and p.returncode:
            raise AssertionError(f"{' '.join(cmd)}: {p.stderr}")
        return p.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """A private single-node Slurm (8 CPUs declared) from scripts/slurm_local.sh; $SLURM_CONF points at it for
    the session, so sbatch/squeue/scancel (and submitit) talk to it alone."""
    missing = [
        x
        for x in ("munged", "slurmctld", "slurmd", "sbatch", "srun")
        if not (shutil.which(x) or Path("/usr/sbin", x).exists())
    ]
    if missing:
        skip_or_fail(
            f"Slurm is not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge); "
            "the Slurm executor tests are skipped"
        )
    if os.geteuid() != 0:
        skip_or_fail(
            "a local Slurm needs root (slurmd starts jobs as their user); the Slurm tests are skipped"
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        skip_or_fail("submitit is not installed (pip install submitit); the Slurm executor tests are skipped")
    folder = Path(tempfile.mkdtemp(prefix="slslurm", dir="/tmp"))
    p = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "start", str(folder), "8"], capture_output=True, text=True, timeout=120
    )
    if p.returncode:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)
        raise RuntimeError(f"slurm_local.sh start failed ({p.returncode}): {p.stderr[-3000:]}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    cluster = SlurmCluster(folder)
    try:
        yield cluster
    finally:
        cluster.run("scancel", f"--user={getpass.getuser()}", check=False)
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(folder, ignore_errors=True)
