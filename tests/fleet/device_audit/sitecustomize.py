"""A path audit for the processes of a test's devices (this folder goes first on their PYTHONPATH,
so Python imports this module at start-up in the SuperNode and every process it starts).

Every file open and directory listing under a folder of AE_DEVICE_FORBIDDEN (os.pathsep-separated:
the server's run folder, its certificates) fails with PermissionError and is logged as `BLOCKED`
to AE_DEVICE_AUDIT_LOG; each process that armed the audit logs `ARMED` with its command line, so
the test can tell the audit ran where it should have."""
import os
import sys

_ROOTS = [os.path.realpath(p) for p in os.environ.get("AE_DEVICE_FORBIDDEN", "").split(os.pathsep) if p]
_LOG = os.environ.get("AE_DEVICE_AUDIT_LOG", "")


def _write(line: str) -> None:
    fd = os.open(_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)   # os.open of the log: not forbidden
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode())
    finally:
        os.close(fd)


def _inside(path: object) -> str | None:
    if isinstance(path, int) or path is None:
        return None
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    return real if any(real == r or real.startswith(r + os.sep) for r in _ROOTS) else None


def _hook(event: str, args: tuple) -> None:
    if event in ("open", "os.listdir", "os.scandir") and args:
        real = _inside(args[0])
        if real is not None:
            _write(f"BLOCKED {os.getpid()} {event} {real}")
            raise PermissionError(f"device audit: {real} is on the server's side")


if _ROOTS and _LOG:
    with open("/proc/self/cmdline", "rb") as fh:          # sys.argv is not set yet at start-up
        _cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")[:300]
    _write(f"ARMED {os.getpid()} {_cmd}")
    sys.addaudithook(_hook)
