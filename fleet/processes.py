"""Child processes a fleet run starts (Flower's SuperLink/SuperNodes, the latent service, a Ray
head), and stopping exactly those, by process id.

Flower's SuperLink and SuperNode start helpers of their own in new sessions (`flower-superexec`,
which starts `flwr-simulation` / `flwr-serverapp` / `flwr-clientapp`, which start Ray), so stopping
only the pid we started can leave its helpers behind. `ProcessGroup.stop` therefore also stops
every descendant of a started process, and every process in a session one of them created (an
orphan that was re-parented to init keeps its session id). It never matches processes by name:
other users on the same host run the same programs. Linux only (reads /proc).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from common.errors import AnalogEdgeError


class ProcessError(AnalogEdgeError, RuntimeError):
    """A started process exited or did not become ready in time; the message names it and its log."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived. It unwinds like Ctrl-C, so every `finally` that stops the processes
    a run started (`ProcessGroup.stop`) runs; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def interrupt_on_signals() -> None:
    """Turn SIGTERM (what `timeout`, a batch scheduler or a container stop sends) and SIGINT into
    `Interrupted`. Python's default for SIGTERM ends the process at once, `finally` blocks unrun, so
    a run's SuperLink, SuperExec and Ray processes (each in a session of its own) were left behind.
    The first signal raises; later ones are ignored while the cleanup (bounded by `ProcessGroup.stop`'s
    grace, then SIGKILL) runs. A signal this process inherited as ignored stays ignored (a shell's
    background job must not become Ctrl-C-able)."""
    def handler(signum: int, frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):
            signal.signal(sig, handler)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live process (zombies excluded)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        if fields[0] in ("Z", "X"):
            continue
        table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def family(roots: Sequence[int]) -> set[int]:
    """`roots`, their live descendants, and every live process in a session one of them leads."""
    table = _proc_table()
    found = {p for p in roots if p in table}
    sessions = set(found)
    while True:
        more = {p for p, (ppid, sid) in table.items() if p not in found and (ppid in found or sid in sessions)}
        if not more:
            return found
        found |= more
        sessions |= {p for p in more if table[p][1] == p}


class ProcessGroup:
    """Processes started for one run; `stop()` ends all of them (TERM, then KILL after a grace)."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self._procs: list[subprocess.Popen] = []
        self._seen: set[int] = set()

    def start(self, cmd: Sequence[str], log: Path | None = None, env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None) -> subprocess.Popen:
        """Start `cmd` in a new session, output to `log` (or inherited when None)."""
        out = open(log, "ab") if log is not None else None
        try:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT if out else None,
                                    env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        finally:
            if out is not None:
                out.close()
        self._procs.append(proc)
        self.pids.append(proc.pid)
        return proc

    def snapshot(self) -> set[int]:
        """Remember the current family (call while everything runs: helpers may exit on their own)."""
        self._seen |= family(self.pids)
        return set(self._seen)

    def alive(self) -> set[int]:
        """Started processes and their helpers that are still running."""
        table = _proc_table()
        return {p for p in family(self.pids) | self._seen if p in table}

    def stop(self, grace_s: float = 10.0) -> set[int]:
        """Stop every process of the group; returns the pids that were still alive to stop."""
        targets = self.snapshot()
        table = _proc_table()
        targets = {p for p in targets if p in table}
        for pid in sorted(targets):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            for proc in self._procs:
                proc.poll()                       # reap our own children
            left = {p for p in family(self.pids) | targets if p in _proc_table()}
            if not left:
                break
            time.sleep(0.1)
        else:
            for pid in sorted(left):
                _signal(pid, signal.SIGKILL)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        return targets

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Poll `predicate()` until true; fail early if `proc` exits, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{what}: exited with code {proc.returncode}" + (f"; see {log}" if log else ""))
        if time.monotonic() > deadline:
            raise ProcessError(f"{what}: not ready within {timeout_s:.0f} s" + (f"; see {log}" if log else ""))
        time.sleep(0.2)
