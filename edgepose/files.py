"""THE crash-safe file layer: atomic writes of files and bundle directories, the temporaries of
killed writers, durable renames, JSON files (whole or streamed as an array), checksums.

Every artifact edgepose writes goes through :func:`atomic_path` (files) or :func:`atomic_dir`
(directories): a reader sees the old bytes or the new ones, never a partial write; a killed
writer's temporaries are reclaimed by the next writer into the same folder."""
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

from .errors import InputError, first_line

# ----------------------------------------------------------------------------------------------
# atomic writes, and the temporaries of killed writers
# ----------------------------------------------------------------------------------------------
# Every temporary that edgepose writes beside an artifact (or in the system's temporary folder)
# is named after the artifact and its writer:
#
#     .<artifact name>.ep<owner>-<pid>-<start>.<random>.tmp[<ext>]   file or directory being written
#     .<artifact name>.ep<owner>-<pid>-<start>.<random>.old          a previous directory moved aside
#
# <owner>: 8 hex digits naming the kernel boot and the pid namespace (a writer's pid means
# something only there); <pid>, <start>: the writer's process id and start time (clock ticks
# since boot, /proc/<pid>/stat; 0 where there is no /proc), so that a reused pid is not taken
# for the writer. A SIGKILL (or a power cut) skips every clean-up of the writer; the first
# atomic write of a later process into the same directory removes the temporaries whose writer
# is gone: same <owner> and no live process <pid> started at <start>, or another <owner> and
# untouched for STALE_AGE_S. A temporary of a live writer, in this process or another, is never
# removed. A stale ``.old`` directory is the previous artifact itself (a kill between moving it
# aside and renaming its replacement in; only where the file system cannot exchange two names
# atomically): it is renamed back when its artifact is missing, else removed.
#
# Durability: the file (every file of a directory) is fsync'ed before the rename and the
# directory after it, so that neither a kill nor a power cut after the rename leaves an empty
# or partial artifact; the bytes under the final name are always a complete write.
STALE_AGE_S = 24 * 3600
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.ep(?P<owner>[0-9a-f]{8})-(?P<pid>[0-9]+)-(?P<start>[0-9]+)"
                      r"\.[A-Za-z0-9_]+\.(?P<kind>tmp|old)(?P<ext>.*)$")
_NAME_MAX = 160          # longest artifact name kept whole in a temporary's name (NAME_MAX is 255)
_lock = threading.Lock()
_cleaned: Dict[Tuple[int, str], bool] = {}
_owner_cache: Dict[str, str] = {}


def _proc_stat(pid: int) -> Optional[Tuple[str, int]]:
    """(state, start time) of a process from /proc, None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read().decode("ascii", "replace")  # novermin (bytes.decode)
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()     # after "pid (comm)": the comm may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _owner() -> str:
    """8 hex digits naming this kernel boot and pid namespace (the host name where no /proc)."""
    got = _owner_cache.get("o")
    if got is None:
        parts = []
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                parts.append(f.read().strip())
            parts.append(os.readlink("/proc/self/ns/pid"))
        except OSError:
            import socket
            parts = ["host", socket.gethostname()]
        got = hashlib.sha1("\0".join(parts).encode()).hexdigest()[:8]
        _owner_cache["o"] = got
    return got


def _marker() -> str:
    """``ep<owner>-<pid>-<start>``: who writes a temporary (see above)."""
    pid = os.getpid()
    st = _proc_stat(pid)
    return "ep%s-%d-%d" % (_owner(), pid, st[1] if st else 0)


def _temp_prefix(name: str) -> str:
    if len(name) > _NAME_MAX:   # a shortened name is never restored to (see clean_stale_temps)
        name = name[:_NAME_MAX - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return ".%s.%s." % (name, _marker())


def _writer_alive(owner: str, pid: int, start: int) -> Optional[bool]:
    """Whether the writer of a temporary runs; None when that cannot be known here."""
    if owner != _owner():
        return None
    if os.path.isdir("/proc/self"):
        st = _proc_stat(pid)    # this process too: another thread's write, or an enclosing one
        return st is not None and st[0] != "Z" and (start == 0 or st[1] == start)
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return None     # (os.kill would terminate the process on Windows)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True     # EPERM: a process of another user has that pid
    return True


def _remove(path: str) -> None:
    import shutil
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def clean_stale_temps(directory: str) -> List[Tuple[str, str]]:
    """Remove the temporaries of dead writers in ``directory`` and restore a previous artifact
    moved aside by one (see the comment above ``STALE_AGE_S``). Returns ``[(action, name)]``,
    action ``removed`` or ``restored``; errors (another user's file, a vanished entry) are
    skipped: a temporary left behind is only ever ignored."""
    from .log import logger

    done: List[Tuple[str, str]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return done
    now = time.time()
    for n in sorted(names):
        m = _TEMP_RE.match(n)
        if m is None:
            continue
        p = os.path.join(directory, n)
        alive = _writer_alive(m.group("owner"), int(m.group("pid")), int(m.group("start")))
        if alive is None:
            try:
                alive = now - os.lstat(p).st_mtime < STALE_AGE_S
            except OSError:
                continue
        if alive:
            continue
        try:
            if m.group("kind") == "old":
                target = os.path.join(directory, m.group("name"))
                if len(m.group("name")) == _NAME_MAX and re.search(r"~[0-9a-f]{8}$", m.group("name")):
                    continue      # a shortened name: where it came from is not known; leave it
                if not os.path.lexists(target) and _rename_noreplace(p, target):
                    logger.warning("restored %s: the previous artifact, moved aside by a writer that was "
                                   "killed before it renamed its replacement in" % target)
                    done.append(("restored", m.group("name")))
                    continue
            _remove(p)
            logger.debug("removed %s, a temporary of a writer that is gone" % p)
            done.append(("removed", n))
        except OSError:
            continue
    return done


def _clean_once(directory: str) -> None:
    """clean_stale_temps the first time this process writes into ``directory``."""
    key = (os.getpid(), os.path.realpath(directory))
    with _lock:
        if key in _cleaned:
            return
        _cleaned[key] = True
    clean_stale_temps(directory)


# renameat2(2) flags; the function is in glibc >= 2.28, the system call in Linux >= 3.15
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_SYS_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276, "armv7l": 382, "armv6l": 382,
                  "i686": 353, "i386": 353}
_renameat2_fn: List = []


def _load_renameat2(use_libc: bool = True):
    """A callable ``(src bytes, dst bytes, flags) -> 0 or -1 (errno)`` for renameat2: glibc's
    function, else the raw system call (glibc < 2.28, as on JetPack 4.6); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import platform
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    at_fdcwd = ctypes.c_int(-100)
    if use_libc and hasattr(libc, "renameat2"):
        f = libc.renameat2
        return lambda a, b, fl: f(at_fdcwd, a, at_fdcwd, b, ctypes.c_uint(fl))
    nr = _SYS_RENAMEAT2.get(platform.machine().lower())
    if nr is None:
        return None
    sc = libc.syscall
    return lambda a, b, fl: sc(ctypes.c_long(nr), at_fdcwd, a, at_fdcwd, b, ctypes.c_uint(fl))


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """renameat2(src, dst, flags); False where the kernel, libc or file system lacks it."""
    import ctypes
    import errno
    if not _renameat2_fn:
        _renameat2_fn.append(_load_renameat2())
    fn = _renameat2_fn[0]
    if fn is None:
        return False
    if fn(os.fsencode(src), os.fsencode(dst), flags) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(e, os.strerror(e), dst)


def _rename_noreplace(src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError then). Where the system
    cannot do that atomically: rename if ``dst`` is absent now. Returns True once renamed."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return True
    if os.path.lexists(dst):
        raise FileExistsError(17, "exists", dst)
    os.rename(src, dst)
    return True


def _fsync(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return      # (Windows: directories cannot be opened)
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise       # directories: EINVAL on some file systems, nothing to do then
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for d, _dirs, files in os.walk(root, topdown=False):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                _fsync(p)
        _fsync(d, directory=True)


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as f:      # Linux >= 4.7: read without changing it
            for ln in f:
                if ln.startswith("Umask:"):
                    return int(ln.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:     # os.umask can only be read by setting it: briefly, under a lock
        m = os.umask(0o022)
        os.umask(m)
    return m


def set_default_permissions(path: str) -> None:
    """Give a temporary file or directory (mkstemp/mkdtemp: 0600/0700) the permissions a newly
    created one would have under the current umask, before it is renamed into place."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_current_umask())


def _temp_file_beside(path: str, suffix: Optional[str] = None) -> str:
    """A new empty temporary file beside ``path`` (suffix: ``.tmp`` + path's extension)."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)
    name = os.path.basename(path)
    _clean_once(d)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(name), dir=d,
                               suffix=".tmp" + (os.path.splitext(name)[1] if suffix is None else suffix))
    os.close(fd)
    return tmp


def _commit_file(tmp: str, path: str, durable: bool = True) -> None:
    """Rename the finished temporary ``tmp`` onto ``path`` (fsync'ed before and after); on an
    error ``tmp`` is deleted."""
    try:
        set_default_permissions(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            _remove(tmp)
        raise
    if durable:
        _fsync(os.path.dirname(os.path.abspath(path)) or ".", directory=True)


@contextlib.contextmanager
def atomic_path(path: str, durable: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same extension); on success it is fsync'ed and
    renamed onto ``path``, on an exception deleted. A kill at any point leaves ``path`` as it
    was (the previous file or none) or the complete new file; the temporary of a killed run is
    removed by a later run (:func:`clean_stale_temps`). ``durable=False``: no fsync (output that
    is cheap to redo, such as annotated images)."""
    tmp = _temp_file_beside(path)
    try:
        yield tmp
    except BaseException:
        if os.path.lexists(tmp):
            _remove(tmp)
        raise
    _commit_file(tmp, path, durable)


@contextlib.contextmanager
def atomic_dir(path: str, durable: bool = True) -> Iterator[str]:
    """Yield a temporary directory beside ``path``; on success its files are fsync'ed, it gets
    the umask's permissions and replaces ``path``, on an exception it is deleted. The directory
    counterpart of :func:`atomic_path` (TensorRT bundles).

    Where Linux can exchange two names atomically (renameat2 RENAME_EXCHANGE: ext4, xfs, btrfs,
    tmpfs, overlayfs, ...) ``path`` is at every instant either the previous directory or the
    new one. Elsewhere the previous one is first moved aside (``.<name>.<writer>.old``): a kill
    before the new one is renamed in leaves ``path`` missing, and the next writer into that
    folder renames the previous one back (:func:`clean_stale_temps`); never a partial one."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)
    name = os.path.basename(os.path.normpath(path))
    _clean_once(d)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(name), suffix=".tmp", dir=d)
    try:
        yield tmp
        set_default_permissions(tmp)  # mkdtemp's 0700 would survive the rename
        if durable:
            _fsync_tree(tmp)
        _commit_dir(tmp, path, d, name, durable)
    except BaseException:
        if os.path.lexists(tmp):
            _remove(tmp)     # the new directory, or after an exchange the previous one
        raise


def _commit_dir(tmp: str, path: str, d: str, name: str, durable: bool) -> None:
    """Put the finished directory ``tmp`` at ``path`` (see :func:`atomic_dir`)."""
    import errno
    for _ in range(5):
        if os.path.lexists(path):
            if _renameat2(tmp, path, _RENAME_EXCHANGE):
                if durable:
                    _fsync(d, directory=True)
                _remove(tmp)              # now the previous artifact
                return
            aside = tmp[:-len(".tmp")] + ".old"
            os.rename(path, aside)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(aside, path)
                raise
            if durable:
                _fsync(d, directory=True)
            _remove(aside)
            return
        try:
            _rename_noreplace(tmp, path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue                  # another writer got there first: replace theirs
            raise
        if durable:
            _fsync(d, directory=True)
        return
    raise OSError(errno.EEXIST, "could not replace %s: other writers keep replacing it" % path)


@contextlib.contextmanager
def scratch_file(beside: str, suffix: str = "") -> Iterator[str]:
    """A temporary file path beside the artifact ``beside`` (for an intermediate result that
    must live on the same file system), always removed on exit; named like the temporaries of
    :func:`atomic_path`, so that a later run removes it if this one is killed."""
    tmp = _temp_file_beside(beside, ".tmp" + suffix)
    try:
        yield tmp
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


@contextlib.contextmanager
def scratch_dir(label: str = "edgepose", dir: Optional[str] = None) -> Iterator[str]:
    """A temporary directory (in ``dir``, default the system's temporary folder), removed on
    exit: :class:`tempfile.TemporaryDirectory` whose leftovers after a kill are removed by a
    later edgepose run (named ``.<label>.<writer>.<random>.tmp``)."""
    import shutil
    d = dir or tempfile.gettempdir()
    _clean_once(d)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(label), suffix=".tmp", dir=d)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: str, data, mode: str = "w") -> None:
    """Write ``data`` (str or bytes) to a temporary file beside ``path``, then rename."""
    with atomic_path(path) as tmp:
        with open(tmp, mode + ("b" if isinstance(data, bytes) else "")) as f:
            f.write(data)


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_json(path: str, what: str = "JSON file", error=InputError):
    """Parse a JSON file; a missing, unreadable or malformed one raises ``error`` in one line
    that names ``what`` and the path."""
    if not os.path.isfile(path):
        raise error("%s not found: %s" % (what, path))
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        msg = first_line(e)
        raise error("%s %s is not valid JSON: %s" % (what, path, msg))


def write_json(path: str, obj) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)


class JsonArrayWriter:
    """A JSON array written item by item (memory does not grow with the items), atomically:
    ``path`` gets the whole array on close(), and keeps its previous content after abort(),
    an exception inside ``with``, or a kill. ``append(obj)``, ``extend(objs)``; ``count``."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = _temp_file_beside(path)
        self.f = open(self.tmp, "w")
        self.f.write("[")
        self.count = 0

    def append(self, obj) -> None:
        self.f.write((",\n" if self.count else "\n") + json.dumps(obj, separators=(",", ":")))
        self.count += 1

    def extend(self, objs) -> None:
        for o in objs:
            self.append(o)

    def close(self) -> None:
        if self.f.closed:
            return
        self.f.write("\n]\n" if self.count else "]\n")
        self.f.close()
        _commit_file(self.tmp, self.path)

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        if os.path.lexists(self.tmp):
            _remove(self.tmp)

    def __enter__(self) -> "JsonArrayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
