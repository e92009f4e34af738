"""Writing output folders so that a fault loses nothing: one-line causes, no temporary files left, and a set
of files replaced as a whole.

:func:`write_file_set` writes every file of a set (e.g. ``certificate.npz``, ``certificate.json``,
``overlay.png``) into a hidden staging folder next to the target folder and then swaps the two folders with
one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere, or where the file system lacks it, two renames
with a recovery step at the next run). After a kill at any moment the target folder holds either the complete
old set or the complete new set; the staging folder is removed (and a stale one of a killed run is removed by
the next run). :func:`atomic_write_bytes` does the same for one file (a temporary sibling, then one rename).
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import threading
import uuid
from pathlib import Path

from .validation import CertattrError

__all__ = ["os_cause", "check_writable_folder", "refuse_foreign_files", "write_file_set", "STAGING_MARK",
           "atomic_write_bytes", "temporary_name"]

STAGING_MARK = ".certattr-staging-"  #: staging folders are named ``.<target name><STAGING_MARK><pid>-<rand>``
_OLD_MARK = ".certattr-old-"

_CAUSES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "the operation is not permitted", errno.ENOTDIR: "a path component is a file, not a folder",
           errno.EEXIST: "a file of that name exists", errno.EISDIR: "it is a folder", errno.ENOENT: "it does not exist",
           errno.EIO: "an input/output error"}


def os_cause(err: OSError) -> str:
    """A short cause for an OSError ("the disk is full", "permission denied", ...)."""
    return _CAUSES.get(getattr(err, "errno", None), (err.strerror or type(err).__name__).lower())


def temporary_name(path) -> Path:
    """A hidden sibling name for ``path`` unique per process, thread and call (``.<name>.<pid>-<tid>-<rand>.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary sibling (unique per process and thread, so concurrent writers never share
    one), are fsynced (unless ``durable`` is False), and replace ``path`` by one rename. On any failure (full
    disk, read-only folder, ...) the temporary file is removed and the OSError propagates; ``path`` keeps its old
    content. Without the fsync a power cut (not a crash of the process) can leave a renamed file whose bytes never
    reached the disk: only for files whose readers detect that by a checksum.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_writable_folder(path, what: str) -> Path:
    """Check that ``path`` is (or can be made) a folder certattr can write into, without leaving anything.

    Raises a one-line CertattrError naming ``what``, the path and the cause: it is a file, a parent is a file,
    it is read-only, not permitted (e.g. under /proc), or the disk is full.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CertattrError(f"{what} {str(path)!r} is a file, not a folder: give a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise CertattrError(f"{what} {str(path)!r} cannot be created: {str(base)!r} is a file, not a folder")
    probe = base / f".certattr-probe-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as fh:  # a full disk fails this write (tmpfs, ext4 block reservation)
            fh.write(b"\0" * 4096)
            fh.flush()
    except OSError as err:
        cause = "files cannot be created there" if err.errno == errno.ENOENT else os_cause(err)
        raise CertattrError(f"{what} {str(path)!r} cannot be written: {cause} ({str(base)!r})") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False if not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    res = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(target: Path) -> None:
    """Clean up after a killed :func:`write_file_set`: remove stale staging folders of dead processes, and put
    back an old set that was moved aside if the target is missing (the two-rename fallback)."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    for mark in (STAGING_MARK, _OLD_MARK):
        for stale in parent.glob(f".{target.name}{mark}*"):
            try:
                pid = int(stale.name[len(target.name) + 1 + len(mark):].split("-")[0])
            except ValueError:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            if mark == _OLD_MARK and not os.path.lexists(target):
                os.rename(stale, target)  # the old set is complete: restore it
            else:
                shutil.rmtree(stale, ignore_errors=True)


def write_file_set(target, files: dict, *, owned: set | None = None, what: str = "--out") -> Path:
    """Write ``files`` ({name: bytes}) as the folder ``target``, replacing the previous set as a whole.

    ``target`` must be missing, empty, or hold only names in ``owned`` (default: the names of ``files``):
    a folder with other files is refused (they would be replaced too). Every OSError becomes a one-line
    CertattrError naming the path and the cause; the old set is then intact and no staging file is left.
    """
    target = Path(os.path.abspath(target))  # "out/." or "." name their folder, not its parent
    owned = set(files) if owned is None else set(owned)
    if target.exists() and not target.is_dir():
        raise CertattrError(f"{what} {str(target)!r} is a file, not a folder: give a folder")
    try:
        recover(target)
    except OSError:
        pass
    refuse_foreign_files(target, owned, what)
    parent = target.parent
    staging = parent / f".{target.name}{STAGING_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for name, data in files.items():
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(staging)
        if not target.exists():
            os.rename(staging, target)
        elif not _exchange(staging, target):
            old = parent / f".{target.name}{_OLD_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(staging, target)
            staging = old
        _fsync_dir(parent)
    except OSError as err:
        raise CertattrError(f"{what} {str(target)!r} cannot be written: {os_cause(err)}; the previous outputs, if "
                            f"any, are unchanged") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def refuse_foreign_files(target, owned, what: str) -> None:
    """One line if the folder ``target`` holds files other than ``owned``: the output folder is replaced as a
    whole, so anything else in it would be lost."""
    target = Path(target)
    if not target.is_dir():
        return
    others = sorted(p.name for p in target.iterdir() if p.name not in set(owned))
    if others:
        raise CertattrError(f"{what} {str(target)!r} holds other files ({', '.join(others[:5])}"
                            f"{', ...' if len(others) > 5 else ''}): certattr replaces the whole folder, so give "
                            f"a new folder or one that holds only {', '.join(sorted(owned))}")
