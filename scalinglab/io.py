"""Atomic writes of files and folders, the sweep of what killed writers left behind, torch-free.

- ``atomic_write_bytes`` / ``atomic_write_json``: a temporary file in the same folder, fsync, rename, fsync
  the folder. A process killed at any point leaves either the previous complete file or the new one.
- ``temp_dir(dest)`` + ``replace_dir(tmp, dest)``: build a folder beside ``dest`` and switch it in; a reader
  of ``dest`` sees the old folder or the new one, never neither and never a mix.
- Every temporary file or folder is owned by its writer through an ``flock`` held while it writes (the OS
  drops it when the process dies, on every host sharing the file system). ``sweep_temps(folder)``, called at
  the start of each command that writes into a folder, deletes the temporaries whose lock nobody holds and
  never a live writer's.
- ``writing(path)``: a full disk (ENOSPC, EDQUOT) while writing ``path`` becomes one ``StorageError`` that
  names the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalinglab.errors import StorageError
from scalinglab.faults import point

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# .{name}.tmp-{pid}-{key}[.lock|.link|.old]: temp_dir's folder, its lock, its symlink, the folder it set aside
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-(?P<key>[0-9a-f]{8})(?P<part>\.lock|\.link|\.old)?$")
# .{name}.{pid}.{key}.tmp: atomic_write_bytes's temporary file
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<key>[0-9a-f]{12})\.tmp$")
# .{name}.old-{pid}-{ns}: the folder set aside by the two-rename switch of earlier versions
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)-\d+$")
_PROBE = re.compile(r"^\.scalinglab\.probe-(?P<pid>\d+)-[0-9a-f]{8}b?$")


def no_space_message(path: Path) -> str:
    """The one line a user sees when the disk fills while ``path`` is written."""
    try:
        free = f" ({shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MiB free)"
    except OSError:
        free = ""
    return (f"no space left on the device writing {path}{free}: free some space and run the same command "
            "again (what was written before is kept)")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk (ENOSPC/EDQUOT) inside the block into a ``StorageError`` naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise StorageError(no_space_message(path)) from None
        raise


def pid_alive(pid: int | float | None) -> bool:
    """Whether process ``pid`` exists on this host (None/NaN/0, e.g. a NULL read through pandas: no)."""
    if pid is None or pid != pid or not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock(fd: int, block: bool = True) -> bool:
    """An exclusive flock on ``fd``: False when another process holds it (or, non-blocking, when the file
    system refuses locks: then nobody can tell the writer is dead, so nothing is swept)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _try_lock(path: Path) -> int | None:
    """An open fd of ``path`` with its flock taken, or None (held by a live process, or gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    if _lock(fd, block=False):
        return fd
    os.close(fd)
    return None


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass


# ------------------------------------------------------------------------------------------------ files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # not mkstemp (always 0600): mode 0666 less the umask in force now, what open() would have given
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _lock(fd)  # held until the rename: sweep_temps leaves a live writer's file alone
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            point(f"write:{path.name}")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (NaN/inf refused: they are not JSON), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


# ---------------------------------------------------------------------------------------------- folders


@contextlib.contextmanager
def temp_dir(dest: Path) -> Iterator[Path]:
    """A new empty folder ``.{dest.name}.tmp-{pid}-{key}`` beside ``dest`` to build ``dest`` in, owned by this
    process (an flock on its sibling ``.lock`` file, held until the block ends); removed if the block raises.
    Hand it to ``replace_dir`` inside the block."""
    dest = Path(dest)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    lock = tmp.with_name(tmp.name + ".lock")
    with writing(tmp):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _lock(fd)
        with writing(tmp):
            tmp.mkdir()  # 0777 less the umask, like any folder the user makes (mkdtemp would give 0700)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _renameat2():
    """libc's renameat2, or the raw system call where glibc is older than 2.28 (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        return fn
    nr = {"x86_64": 316, "aarch64": 276}.get(os.uname().machine)
    if nr is None:
        return None
    return lambda *args: libc.syscall(nr, *args)


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE). False where the OS or the
    file system cannot (old kernels, NFS, ...): then nothing changed."""
    if _RENAMEAT2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if _RENAMEAT2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


_EXCHANGE_WORKS: dict[int, bool] = {}  # st_dev -> whether that file system exchanges (probed once)


def _exchange_works(folder: Path) -> bool:
    """Whether the file system of ``folder`` can exchange two paths (probed once per device on two empty
    files ``.scalinglab.probe-{pid}-{key}[b]``; a killed probe's files are swept)."""
    dev = os.stat(folder).st_dev
    if dev not in _EXCHANGE_WORKS:
        a = folder / f".scalinglab.probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        b = a.with_name(a.name + "b")
        try:
            a.touch()
            b.touch()
            _EXCHANGE_WORKS[dev] = exchange(a, b)
        finally:
            for f in (a, b):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
    return _EXCHANGE_WORKS[dev]


def replace_dir(tmp: Path, dest: Path, *, replace: bool = True) -> None:
    """Put the complete folder ``tmp`` (from ``temp_dir(dest)``) at ``dest``; at no moment is ``dest`` missing
    or a mix of the two.

    - ``dest`` absent: one rename (``replace=False``: FileExistsError when ``dest`` exists).
    - ``dest`` a folder: one ``RENAME_EXCHANGE`` swaps the two, then the old one (now at ``tmp``) is deleted.
    - on a file system that cannot exchange (NFS, old kernels), ``dest`` is made a symlink to ``tmp``, and
      switched by renaming a new symlink over it. A real folder found there (made by an earlier version, or
      copied in) is turned into that symlink by two renames, once; a kill between them is rolled forward by
      the next ``sweep_temps``.
    """
    tmp, dest = Path(tmp), Path(dest)
    with writing(dest):
        if not os.path.lexists(dest):
            try:
                if _exchange_works(dest.parent):
                    os.rename(tmp, dest)
                else:
                    _switch_link(tmp, dest)
                return _fsync_dir(dest.parent)
            except OSError as e:  # made meanwhile by another process
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                    raise
        if not replace:
            raise FileExistsError(errno.EEXIST, "already exists", str(dest))
        if not os.path.islink(dest) and exchange(tmp, dest):
            point("swap")
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder
        else:
            _switch_link(tmp, dest)
        _fsync_dir(dest.parent)


def _switch_link(tmp: Path, dest: Path) -> None:
    """``dest`` := a symlink to ``tmp``'s name (see ``replace_dir``); the folder it replaces is deleted."""
    link = tmp.with_name(tmp.name + ".link")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    os.symlink(tmp.name, link)  # relative: the folder that holds both can move
    if os.path.isdir(dest) and not os.path.islink(dest):
        aside = tmp.with_name(tmp.name + ".old")
        os.rename(dest, aside)
        point("swap")
        os.replace(link, dest)
        shutil.rmtree(aside, ignore_errors=True)
        return
    old = os.readlink(dest) if os.path.islink(dest) else None
    os.replace(link, dest)
    point("swap")
    if old is not None and _TEMP.match(old) and os.sep not in old:  # the folder it pointed at, one of ours
        shutil.rmtree(dest.parent / old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_temps(folder: Path) -> list[Path]:
    """Delete the temporary files and folders killed writers left in ``folder`` (their lock is free; for
    those of earlier versions, without a lock, their pid is dead on this host), restoring a folder a kill
    left missing. Never touches a live writer's, nor the folder a symlink of ours points at. Returns what was
    deleted (or restored)."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    done: list[Path] = []
    groups: dict[tuple[str, str, str], set[str]] = {}
    for n in names:
        m = _TEMP.match(n)
        if m:
            groups.setdefault((m["name"], m["pid"], m["key"]), set()).add(m["part"] or "")
    for (name, pid, key), parts in groups.items():
        base = folder / f".{name}.tmp-{pid}-{key}"
        fd = None
        if ".lock" in parts:
            fd = _try_lock(base.with_name(base.name + ".lock"))
            if fd is None:
                continue  # a live writer
        elif pid_alive(int(pid)):
            continue  # no lock: a finished writer's folder (a symlink target) or an old version's; pid alive
        try:
            dest = folder / name
            for part in (".link", ".old"):  # killed between a switch's two renames: finish it
                if part in parts and not os.path.lexists(dest):
                    os.rename(base.with_name(base.name + part), dest)
                    parts.discard(part)
                    done.append(dest)
            target = os.readlink(dest) if os.path.islink(dest) else None
            for part in parts - {".lock"}:
                p = base.with_name(base.name + part)
                if p.name != target:
                    _remove(p)
                    done.append(p)
        finally:
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(base.with_name(base.name + ".lock"))
                os.close(fd)
    for n in names:
        p = folder / n
        if _TEMP_FILE.match(n):
            fd = _try_lock(p)
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                os.close(fd)
                done.append(p)
        elif (m := _PROBE.match(n)) and not pid_alive(int(m["pid"])):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            done.append(p)
        elif (m := _OLD.match(n)) and not pid_alive(int(m["pid"])):
            dest = folder / m["name"]
            if not os.path.lexists(dest):  # killed between the two renames of an earlier version
                os.rename(p, dest)
            else:
                _remove(p)
            done.append(p)
    return done
