"""ProcessGroup stops what it started, helpers in their own sessions included, and nothing else."""
import subprocess
import sys
import time

from fleet.processes import ProcessGroup, family, free_port


def test_stop_ends_children_grandchildren_and_detached_helpers(tmp_path):
    # a parent with a plain child and a helper in a new session (as flower-superexec is started)
    script = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
              "time.sleep(300)\n")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    group = ProcessGroup()
    try:
        group.start([sys.executable, "-c", script], log=tmp_path / "log")
        deadline = time.monotonic() + 30
        while len(group.alive()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        started = group.alive()
        assert len(started) == 3 and bystander.pid not in started
        stopped = group.stop(grace_s=5)
        assert stopped == started
        assert group.alive() == set() and not (family(sorted(started)) & started)
        assert bystander.poll() is None                      # not ours: untouched
    finally:
        bystander.kill()
        bystander.wait()
        group.stop(grace_s=1)


def test_free_port_is_bindable_on_loopback():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
