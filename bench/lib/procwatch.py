#!/usr/bin/env python3
"""Process helpers for bench/run (stdlib only).

  procwatch.py rss PID                      current VmRSS of PID in MiB
  procwatch.py hwm PID                      VmHWM (peak RSS over the process's life) of PID in MiB
  procwatch.py cpu PID                      CPU time (user + system) PID has used so far, in seconds
  procwatch.py sample PID OUT [INTERVAL_MS] poll VmRSS every INTERVAL_MS (default 100) until PID exits
                                            or this process gets SIGTERM/SIGINT; OUT always holds the
                                            peak so far in MiB (and the sample count)
  procwatch.py wait-health URL PID TIMEOUT_S
                                            poll URL every 5 ms until it answers 200; print the epoch
                                            time (float seconds) of that answer. Exit 1 if PID dies or
                                            the timeout passes.
  procwatch.py free-port START              the first TCP port >= START that 127.0.0.1 can bind
"""

import http.client
import json
import os
import signal
import socket
import sys
import time


def vm_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def cmd_rss(pid: int) -> int:
    print(f"{vm_kib(pid) / 1024:.1f}")
    return 0


def cmd_cpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state(0) ppid … utime(11) stime(12), in clock ticks
    ticks = int(fields[11]) + int(fields[12])
    print(f"{ticks / os.sysconf('SC_CLK_TCK'):.2f}")
    return 0


def cmd_sample(pid: int, out: str, interval_ms: int) -> int:
    stop = False

    def on_signal(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    peak = 0
    samples = 0

    def write():
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump({"peak_rss_mb": round(peak / 1024, 1), "samples": samples}, f)
        os.replace(tmp, out)

    write()
    while not stop:
        try:
            kib = vm_kib(pid)
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            break  # the process is gone
        samples += 1
        if kib > peak:
            peak = kib
            write()
        time.sleep(interval_ms / 1000)
    write()
    return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by the shell) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmd_wait_health(url: str, pid: int, timeout_s: float) -> int:
    if not url.startswith("http://"):
        print("wait-health: only http:// URLs", file=sys.stderr)
        return 2
    hostport, _, path = url[len("http://"):].partition("/")
    host, _, port = hostport.partition(":")
    path = "/" + path
    deadline = time.monotonic() + timeout_s
    last_err = "no attempt"
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, int(port or 80), timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                print(f"{time.time():.6f}")
                return 0
            last_err = f"HTTP {status}"
        except OSError as e:
            last_err = str(e)
        if not alive(pid):
            print(f"wait-health: process {pid} exited before {url} answered ({last_err})", file=sys.stderr)
            return 1
        time.sleep(0.005)
    print(f"wait-health: {url} did not answer 200 within {timeout_s}s ({last_err})", file=sys.stderr)
    return 1


def cmd_free_port(start: int) -> int:
    for port in range(start, min(start + 200, 65536)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        print(port)
        return 0
    print(f"free-port: no free port in {start}..{start + 199}", file=sys.stderr)
    return 1


def main(argv) -> int:
    if len(argv) >= 2 and argv[0] == "rss":
        return cmd_rss(int(argv[1]))
    if len(argv) == 2 and argv[0] == "hwm":
        print(f"{vm_kib(int(argv[1]), 'VmHWM') / 1024:.1f}")
        return 0
    if len(argv) == 2 and argv[0] == "cpu":
        return cmd_cpu(int(argv[1]))
    if len(argv) >= 3 and argv[0] == "sample":
        return cmd_sample(int(argv[1]), argv[2], int(argv[3]) if len(argv) > 3 else 100)
    if len(argv) == 4 and argv[0] == "wait-health":
        return cmd_wait_health(argv[1], int(argv[2]), float(argv[3]))
    if len(argv) == 2 and argv[0] == "free-port":
        return cmd_free_port(int(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
