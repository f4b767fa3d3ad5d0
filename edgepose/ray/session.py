"""Connecting to Ray: the address check, starting a local instance or joining a cluster, and
shutting down what was started here (a joined cluster is left running).

Ray's driver prints the raylet's error messages ("A worker died or was killed ...", "Task ...
will be retried") on *stdout*, where edgepose writes its results. Ray documents
``RAY_DEDUP_LOGS_SKIP_REGEX`` ("log messages to skip printing", read when ``ray`` is imported):
:func:`import_ray` sets it (unless the user did) to those messages, which edgepose reports in
one line of its own on stderr. In a process that imported ray before edgepose could set it, a
job's session filters ``sys.stdout`` instead: Ray's ``(raylet)`` lines go to edgepose's debug log.
"""
import contextlib
import logging
import os
import re
import socket
import sys
import threading
from typing import Optional

from ..errors import InputError, first_line
from ..log import logger

# the raylet's messages about a worker process that died and the calls Ray runs again
# (edgepose says what happened instead)
QUIET_RAYLET = (r"worker died|was killed|Worker exit|SYSTEM_ERROR|died unexpectedly|"
                r"will be retried|retries remaining|temporarily unavailable")
_quiet_by_env = False        # ray was imported here, RAY_DEDUP_LOGS_SKIP_REGEX set before
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def import_ray():
    """``ray``, or a one-line error saying how to install it."""
    global _quiet_by_env
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", QUIET_RAYLET)
        _quiet_by_env = True
    try:
        import ray
    except ImportError:
        raise InputError("ray is not installed: pip install 'edgepose[ray]'")
    return ray


class _StdoutWithoutRaylet:
    """``sys.stdout`` during a job in a process whose ray was imported before edgepose: a line
    Ray prints for its raylet (``(raylet) ...``, then its newline) goes to the debug log, every
    other write passes through."""

    def __init__(self, out):
        self._out = out
        self._local = threading.local()

    def write(self, s):
        if getattr(self._local, "newline", False) and s == "\n":
            self._local.newline = False
            return len(s)
        self._local.newline = False
        text = _ANSI.sub("", s) if isinstance(s, str) else ""
        if text.startswith("(raylet)"):
            logger.debug("ray: %s", text.strip().splitlines()[0][:300])
            self._local.newline = not s.endswith("\n")
            return len(s)
        return self._out.write(s)

    def __getattr__(self, name):
        return getattr(self._out, name)


def _check_host_port(address: str, what: str) -> None:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("%s: expected 'auto' or HOST:PORT (e.g. 10.0.0.5:6379), or no "
                         "address for a Ray instance on this machine" % what)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3.0).close()
    except OSError as e:
        raise InputError("no Ray cluster at %s: %s" % (address, e.strerror or first_line(e)))


def check_address(address: Optional[str]) -> str:
    """``"local"`` (None too: a Ray instance on this machine), ``"auto"`` or
    ``[ray://]HOST:PORT``. An address must accept a TCP connection within 3 s, so that a wrong
    one fails at once in one line rather than after Ray's own 20-second wait. ``"auto"`` with
    ``RAY_ADDRESS`` set checks that address; without it, ``ray.init(address="auto")`` finds the
    cluster last started on this machine and its error is reported in one line."""
    if address is None or address == "local":
        return "local"
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS", "").strip()
        if env and env not in ("auto", "local"):
            _check_host_port(env, "--ray auto: RAY_ADDRESS=%s" % env)
        return address
    _check_host_port(address, "--ray %s" % address)
    return address


@contextlib.contextmanager
def _sigint_deferred():
    """Within: a first Ctrl-C is held back and raised as KeyboardInterrupt on leaving (ray.init
    and ray.shutdown interrupted half-way leave a process that crashes when it exits); a second
    one interrupts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        yield
        return
    got = []

    def hold(signum, frame):
        if got:                     # a second Ctrl-C: now
            raise KeyboardInterrupt
        got.append(signum)

    old = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


class RaySession:
    """Within: connected to Ray. ``"local"``: a Ray instance started here (``num_cpus``, no
    dashboard, shut down on exit); ``"auto"`` / an address: a running cluster (left running).
    A process already connected (``ray.init`` called by the caller) is used as it is."""

    def __init__(self, address: str = "local", num_cpus: Optional[int] = None):
        self.address = check_address(address)
        self.num_cpus = num_cpus
        self.ray = import_ray()
        self.started = False
        self._stdout = None

    def __enter__(self):
        ray = self.ray
        if not _quiet_by_env:
            self._stdout = sys.stdout
            sys.stdout = _StdoutWithoutRaylet(sys.stdout)
        try:
            return self._connect(ray)
        except BaseException:
            self._restore()
            raise

    def _restore(self) -> None:
        if self._stdout is not None and isinstance(sys.stdout, _StdoutWithoutRaylet):
            sys.stdout = self._stdout
        self._stdout = None

    def _connect(self, ray):
        if ray.is_initialized():
            return self
        opts = dict(log_to_driver=False, logging_level=logging.ERROR, namespace="edgepose")
        try:
            with _sigint_deferred():
                if self.address == "local":
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                             _node_ip_address="127.0.0.1", **opts)
                else:
                    ray.init(address=self.address, **opts)
        except KeyboardInterrupt:
            with _sigint_deferred():
                if ray.is_initialized():
                    ray.shutdown()
            raise
        except (ConnectionError, RuntimeError, ValueError) as e:
            if self.address == "local":
                raise InputError("cannot start a local Ray instance: %s" % first_line(e))
            hint = "" if os.environ.get("RAY_AUTH_MODE") or self.address == "auto" else \
                " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token)"
            raise InputError("cannot connect to the Ray cluster at %s: %s%s"
                             % (self.address, first_line(e), hint))
        self.started = True
        return self

    def __exit__(self, *exc):
        try:
            if self.started:
                with _sigint_deferred():
                    self.ray.shutdown()
        finally:
            self._restore()
        return False

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0.0))
