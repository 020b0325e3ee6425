"""The two nginx instances the tester compares, from one binary.

`stock` loads nginx's C mail module only; `ours` loads it and ngx-mail-rs
after it. Both get the same mail{} configuration, generated here: for every
job slot one server per variant below, each with its own listen port and its
own auth_http port, so that whatever an auth server or backend of a slot
receives belongs to the one session that slot is running.
"""

import os

# DIFFTEST_LOG_LEVEL=debug (with --keep) leaves a debug log to read a case by
LOG_LEVEL = os.environ.get("DIFFTEST_LOG_LEVEL", "info")
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# (variant name, protocol, directives). Several servers per protocol cover
# the auth methods; max_errors and the timeouts are small so that errors end
# sessions and stalls end quickly.
VARIANTS = {
    "pop3": [
        ("pop3_all", "pop3", "pop3_auth plain apop cram-md5 external;"),
        ("pop3_plain", "pop3", ""),
    ],
    "imap": [
        ("imap_all", "imap", "imap_auth plain login cram-md5 external;"),
        ("imap_plain", "imap", ""),
    ],
    "smtp": [
        ("smtp_all", "smtp", "smtp_auth plain login cram-md5 external;"),
        ("smtp_none", "smtp", "smtp_auth plain login none;"),
        ("smtp_noxclient", "smtp", "xclient off; proxy_smtp_auth on;"),
    ],
}

# The command buffers the generator aims near (POP3's is fixed at 128).
BUFFER_LIMITS = {"pop3": 128, "imap": 256, "smtp": 256}

MAIL_COMMON = """
    server_name          mx.test;
    max_errors           3;
    timeout              400ms;
    auth_http_timeout    600ms;
    proxy_timeout        500ms;
    imap_client_buffer   256;
    smtp_client_buffer   256;
"""


def free_ports(count):
    """`count` distinct loopback ports nobody listens on right now, below
    the ephemeral range (32768-60999 on Linux) so that no client socket of
    this or another program takes one between here and nginx's bind."""
    rng = random.Random()
    start = rng.randrange(10000, 30000 - count)
    ports = []
    for port in range(start, 32000):
        if len(ports) == count:
            return ports
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
    raise RuntimeError("not enough free ports below 32000")


class SlotPorts:
    """The ports of one job slot on one instance."""

    def __init__(self, listen, auth, backend):
        self.listen = listen  # variant name -> port nginx listens on
        self.auth = auth  # the slot's mock auth server
        self.backend = backend  # the slot's mock backend

    def names(self):
        """Port number -> symbolic name, to normalise recorded bytes."""
        names = {self.auth: "AUTH_PORT", self.backend: "BACKEND_PORT"}
        for variant, port in self.listen.items():
            names[port] = "LISTEN_PORT"
        return names


def allocate_slots(jobs, instances=("stock", "ours")):
    """Ports for `jobs` slots of each instance, all distinct."""
    variants = [v for group in VARIANTS.values() for v, _, _ in group]
    per_slot = len(variants) + 2
    ports = free_ports(len(instances) * jobs * per_slot)
    slots = {}
    for i, name in enumerate(instances):
        slots[name] = []
        for j in range(jobs):
            at = (i * jobs + j) * per_slot
            chunk = ports[at:at + per_slot]
            slots[name].append(SlotPorts(dict(zip(variants, chunk)), chunk[-2], chunk[-1]))
    return slots


def mail_config(slots):
    servers = []
    for j, slot in enumerate(slots):
        for group in VARIANTS.values():
            for variant, protocol, directives in group:
                servers.append(
                    f"    server {{ # slot {j} {variant}\n"
                    f"        listen 127.0.0.1:{slot.listen[variant]};\n"
                    f"        protocol {protocol};\n"
                    f"        auth_http http://127.0.0.1:{slot.auth}/auth;\n"
                    f"        {directives}\n"
                    f"    }}\n")
    return "mail {\n" + MAIL_COMMON + "".join(servers) + "}\n"


class Instance:
    """One nginx, running in its own temporary prefix."""

    def __init__(self, name, binary, modules, slots):
        self.name = name
        self.binary = binary
        self.modules = modules
        self.slots = slots
        self.dir = tempfile.mkdtemp(prefix=f"difftest-{name}-")
        self.proc = None

    def config(self):
        user = "user root;\n" if os.geteuid() == 0 else ""
        loads = "".join(f"load_module {m};\n" for m in self.modules)
        return (f"{user}{loads}worker_processes 1;\ndaemon off;\n"
                f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log {LOG_LEVEL};\n"
                "events { worker_connections 4096; }\n" + mail_config(self.slots))

    def start(self):
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        self.proc = subprocess.Popen(
            [self.binary, "-p", self.dir, "-c", conf, "-e", f"{self.dir}/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # nginx writes its pid file once every listen socket is bound
        pid_file = os.path.join(self.dir, "nginx.pid")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx ({self.name}) did not start: "
                                   + self.proc.stderr.read().decode(errors="replace")
                                   + "".join(self.alerts()))
            if os.path.exists(pid_file):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx ({self.name}) did not start within 20 s")

    def stop(self, keep=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def alerts(self):
        """[alert] and [emerg] lines of the error log (a crashed worker)."""
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return [l.rstrip() for l in f if "[alert]" in l or "[emerg]" in l]
        except OSError:
            return []
