#!/usr/bin/env python3
"""Soak: thousands of POP3, IMAP and SMTP sessions through nginx with faults
injected at every stage, `nginx -s reload` during the load, then checks that
nothing crashed, alerted, leaked or lost a byte.

Usage: soak.py --nginx BIN --globals 'load_module ...;' [--seconds N]
               [--concurrency N] [--reload-every S] [--valgrind SUPP]
"""

import argparse
import asyncio
import collections
import glob
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clients  # noqa: E402
import servers  # noqa: E402

CONF = """
{globals}
worker_processes 1;
worker_shutdown_timeout 3s;
daemon off;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
mail {{
    auth_http 127.0.0.1:{auth}/auth;
    auth_http_timeout 2s;
    timeout 3s;
    proxy_timeout 5s;
    server_name soak.test;
    max_errors 5;
    server {{ listen 127.0.0.1:{pop3}; protocol pop3; pop3_auth plain apop cram-md5;
              auth_http_keepalive 8 timeout=2s; }}
    server {{ listen 127.0.0.1:{imap}; protocol imap; imap_auth plain login cram-md5;
              auth_http_server 127.0.0.1:{closed}/auth; auth_http_server 127.0.0.1:{auth}/auth;
              auth_http_keepalive 8 timeout=2s; }}
    server {{ listen 127.0.0.1:{smtp}; protocol smtp; smtp_auth plain login none;
              auth_http_cache zone=soak:64k valid=5s invalid=5s; }}
    server {{ listen 127.0.0.1:{smtp_dns}; protocol smtp; xclient off; proxy_smtp_auth on;
              resolver 127.0.0.1:{dns}; resolver_timeout 1s; }}
    server {{ listen 127.0.0.1:{pop3_down}; protocol pop3; auth_http 127.0.0.1:{closed}/auth; }}
}}
"""


class Stats:
    def __init__(self):
        self.c = collections.Counter()
        self.notes = []
        self.auth_requests = 0
        self.backend_sessions = 0

    def count(self, key):
        self.c[key] += 1

    def add(self, key, n):
        self.c[key] += n

    def note(self, text):
        """Something to look at after the run (written to notes.log)."""
        self.notes.append("%.3f %s" % (time.monotonic(), text))


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def worker_pids(master):
    try:
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(p) for p in out.split()]


def process_facts(pid, stats=None):
    """Open descriptors and resident memory (kB) of one process."""
    names = sorted(os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid))
    if stats:
        stats.note("worker %d fds: %s" % (pid, " ".join(names)))
        ss = subprocess.run(["ss", "-tuanpe"], capture_output=True, text=True).stdout
        stats.note("\n".join(l for l in ss.splitlines() if "pid=%d," % pid in l))
    fds = len(names)
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, rss


async def wait_port(port, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit("nginx did not start listening on %d" % port)


async def quiet_worker(master, settle=8.0):
    """The single worker once the old ones are gone and it is idle."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        if len(pids) == 1:
            await asyncio.sleep(settle)
            if worker_pids(master) == pids:
                return pids[0]
        await asyncio.sleep(0.5)
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--globals", default="")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=40)
    ap.add_argument("--reload-every", type=float, default=10)
    ap.add_argument("--valgrind", metavar="SUPPRESSIONS")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ngx-mail-rs-soak.")
    stats = Stats()
    auth, backends = await servers.start(stats)
    listen = {k: free_port() for k in ("pop3", "imap", "smtp", "smtp_dns", "pop3_down")}
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a DNS server that never answers
    dns.bind(("127.0.0.1", 0))
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(CONF.format(globals=args.globals, dir=work, auth=auth, dns=dns.getsockname()[1],
                            closed=free_port(), **listen))
    cmd = [args.nginx, "-p", work + "/", "-c", "nginx.conf", "-e", "error.log"]
    env = dict(os.environ)
    if args.valgrind:
        # our blocks from malloc, so that memcheck sees each of them
        env["NGX_MAIL_RS_SYSTEM_ALLOC"] = "1"
        cmd = ["valgrind", "--tool=memcheck", "--trace-children=yes",
               "--log-file=%s/vg.%%p.log" % work, "--leak-check=full",
               "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
               "--suppressions=" + args.valgrind] + cmd
    nginx = subprocess.Popen(cmd, stderr=open(os.path.join(work, "stderr"), "w"), env=env)
    for port in listen.values():
        await wait_port(port)
    ports = {"pop3": listen["pop3"], "imap": listen["imap"], "smtp": listen["smtp"],
             "smtp-dns": listen["smtp_dns"], "pop3-down": listen["pop3_down"]}
    # measured on a worker started by a reload, as the last one will be
    os.kill(nginx.pid, signal.SIGHUP)
    await quiet_worker(nginx.pid)
    await clients.warm_up(ports)
    worker = await quiet_worker(nginx.pid)
    base_fds, base_rss = process_facts(worker, stats)
    deadline = time.monotonic() + args.seconds
    hangs = 0

    async def loop():
        nonlocal hangs
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(clients.run_one(ports, stats), 30)
            except asyncio.TimeoutError:
                hangs += 1
            except OSError:
                stats.count("connect failed")

    async def reloads():
        while time.monotonic() < deadline - args.reload_every / 2:
            await asyncio.sleep(args.reload_every)
            os.kill(nginx.pid, signal.SIGHUP)
            stats.count("reloads")
            stats.note("reload")

    started = time.monotonic()
    try:
        await asyncio.gather(reloads(), *(loop() for _ in range(args.concurrency)))
    except BaseException:
        nginx.kill()
        raise
    elapsed = time.monotonic() - started
    await quiet_worker(nginx.pid)
    await clients.warm_up(ports)
    worker = await quiet_worker(nginx.pid)
    end_fds, end_rss = process_facts(worker, stats) if worker else (-1, -1)
    if os.environ.get("SOAK_HOLD"):
        print("holding nginx %d for inspection" % nginx.pid, flush=True)
        await asyncio.sleep(float(os.environ["SOAK_HOLD"]))
    nginx.send_signal(signal.SIGQUIT)
    try:
        nginx.wait(120)
    except subprocess.TimeoutExpired:
        nginx.kill()
        stats.count("nginx did not exit")

    with open(os.path.join(work, "notes.log"), "w") as f:
        f.write("\n".join(stats.notes) + "\n")
    log = open(os.path.join(work, "error.log"), errors="replace").read()
    alerts = re.findall(r"^.*\[alert\].*$", log, re.M)
    shutdown_closed = len(re.findall(r"shutdown timeout", log))
    crashes = [a for a in alerts if "exited on signal" in a]
    sanitizer = re.findall(r"^.*Sanitizer.*$", log + open(os.path.join(work, "stderr")).read(), re.M)
    vg_errors = 0
    for path in glob.glob(os.path.join(work, "vg.*.log")):
        for m in re.finditer(r"ERROR SUMMARY: (\d+)", open(path).read()):
            vg_errors += int(m.group(1))

    c = stats.c
    print("soak: %.0f s, concurrency %d, %d sessions, %d faults injected, %d reloads"
          % (elapsed, args.concurrency, c["sessions"], c["faults"], c["reloads"]))
    for key in sorted(k for k in c if k.split(" ")[0] in ("pop3", "imap", "smtp", "smtp-none",
                                                         "auth:")):
        print("  %-40s %6d" % (key, c[key]))
    for key in ("transfers byte-exact", "bytes verified", "transfers corrupt",
                "ended by nginx (expected for faults)", "ended by nginx during a clean session",
                "connection reset", "connect failed"):
        print("  %-40s %6d" % (key, c[key]))
    print("  auth requests %d, backend sessions %d" % (stats.auth_requests, stats.backend_sessions))
    print("  hangs (no end within 30 s)              %6d" % hangs)
    print("  sessions closed by worker_shutdown_timeout on reload %d" % shutdown_closed)
    print("  crashes %d, [alert] lines %d, sanitizer reports %d, valgrind errors %d"
          % (len(crashes), len(alerts), len(sanitizer), vg_errors))
    print("  worker fds %d -> %d, worker RSS %d kB -> %d kB" % (base_fds, end_fds, base_rss, end_rss))
    for a in alerts[:5]:
        print("  " + a)
    failed = (crashes or alerts or sanitizer or vg_errors or hangs or c["transfers corrupt"]
              or end_fds != base_fds or c["nginx did not exit"]
              # a clean session may only be cut short by a reload
              or c["ended by nginx during a clean session"] > shutdown_closed)
    print("soak: %s (logs in %s)" % ("FAIL" if failed else "PASS", work))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
