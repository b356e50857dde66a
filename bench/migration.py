#!/usr/bin/env python3
"""What placing a new process in a cgroup costs, three ways (run as root in a
box: `bench/migration.sh`):

  systemd   StartTransientUnit of a scope around the process (systemd-run
            --scope, as runc and berth-init do): systemd migrates it
  write     fork, then write its pid to a pre-made sub-cgroup's cgroup.procs
            (what berth-shim does to enter berthd-monitors.scope/<id>)
  clone3    clone3(CLONE_INTO_CGROUP) into that sub-cgroup: born there, no
            migration at all

each after GAP ms of idle (a migration waits for an RCU grace period unless
another happened within the last one: the first of a burst pays).
Prints the median and p90 in ms of N samples per way and gap."""

import ctypes
import os
import struct
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
libc = ctypes.CDLL(None, use_errno=True)
SYS_CLONE3 = 435
CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17


def clone3_into(cgroup_fd):
    # struct clone_args (v2, 88 bytes): flags, pidfd, child_tid, parent_tid,
    # exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    args = struct.pack("11Q", CLONE_INTO_CGROUP, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd)
    buf = ctypes.create_string_buffer(args, len(args))
    return libc.syscall(ctypes.c_long(SYS_CLONE3), buf, ctypes.c_size_t(len(args)))


def way_write(sub):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    with open(os.path.join(sub, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    t = time.perf_counter() - t0
    os.write(w, b"x")
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return t


def way_clone3(sub):
    fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    t0 = time.perf_counter()
    pid = clone3_into(fd)
    if pid == 0:
        os._exit(0)
    t = time.perf_counter() - t0
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
    os.waitpid(pid, 0)
    os.close(fd)
    return t


def way_systemd(_sub, i=[0]):
    i[0] += 1
    t0 = time.perf_counter()
    subprocess.run(["systemd-run", "--scope", "--quiet", "-p", "DefaultDependencies=no",
                    "--unit", f"mig-{os.getpid()}-{i[0]}", "true"], check=True)
    return time.perf_counter() - t0


def way_fork(_sub):
    """The baseline of write and clone3: a fork that stays where it is."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    t = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return t


def main():
    # A delegated scope of our own, with one sub-cgroup to place children in.
    unit = f"mig-{os.getpid()}.scope"
    holder = subprocess.Popen(["systemd-run", "--scope", "--quiet", "-p", "Delegate=yes",
                               "--unit", unit, "sleep", "1000"])
    cg = ""
    for _ in range(100):
        cg = subprocess.run(["systemctl", "show", "-P", "ControlGroup", unit],
                            capture_output=True, text=True).stdout.strip()
        if cg:
            break
        time.sleep(0.05)
    sub = f"/sys/fs/cgroup{cg}/sub"
    os.makedirs(sub, exist_ok=True)
    ways = [("fork only", way_fork), ("write cgroup.procs", way_write),
            ("clone3 CLONE_INTO_CGROUP", way_clone3), ("systemd-run --scope", way_systemd)]
    try:
        for gap in (0, 50):
            samples = {name: [] for name, _ in ways}
            for _ in range(N):
                for name, f in ways:
                    time.sleep(gap / 1000)
                    samples[name].append(f(sub) * 1000)
            for name, v in samples.items():
                v.sort()
                print(f"gap {gap:2} ms  {name:26} median {v[len(v) // 2]:7.3f} ms"
                      f"  p90 {v[int(len(v) * 0.9)]:7.3f} ms")
    finally:
        holder.terminate()
        subprocess.run(["systemctl", "stop", unit], capture_output=True)


main()
