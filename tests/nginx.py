"""Run a real nginx as a load balancer in front of local replicas (tests).

The config is rendered from ``deploy/nginx.conf``, the production file, so the tests exercise the
deployed rules: only the upstream servers (``cutout-N:8000`` -> ``127.0.0.1:PORT``), the listen
address, and the pid/log/temp paths (under a private prefix directory) are swapped, and
``daemon off; master_process on;`` is added so the master stays our subprocess.

    with NginxBalancer(["127.0.0.1:8001", "127.0.0.1:8002"], prefix) as lb:
        httpx.get(lb.url + "/health").headers["X-Upstream"]   # which replica answered
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

try:
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_CONF = ROOT / "deploy" / "nginx.conf"
INSTALL_SCRIPT = ROOT / "scripts" / "install_nginx.sh"

#: the production upstream lines: "server cutout-1:8000 max_fails=2 fail_timeout=5s;"
_UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+cutout-\d+:\d+(?P<params>[^;\n]*);[ \t]*$",
                              re.MULTILINE)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+80;[ \t]*$", re.MULTILINE)
_PID = re.compile(r"^pid[ \t]+[^;\n]+;[ \t]*$", re.MULTILINE)
_ERROR_LOG = re.compile(r"^error_log[ \t]+[^;\n]+;[ \t]*$", re.MULTILINE)
_ACCESS_LOG = re.compile(r"^(?P<indent>[ \t]*)access_log[ \t]+/dev/stdout[ \t]+(?P<fmt>\w+);[ \t]*$",
                         re.MULTILINE)
_HTTP_OPEN = re.compile(r"^http[ \t]*\{[ \t]*$", re.MULTILINE)
#: an access-log field written by deploy/nginx.conf's "upstream" log format: key="value" or key=value
_LOG_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_binary() -> str | None:
    """Path of the nginx executable (PATH, then /usr/sbin), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def ensure_nginx() -> str | None:
    """The nginx executable, running ``scripts/install_nginx.sh`` first when it is missing (it
    installs Debian's package as root, and otherwise explains on stderr and changes nothing)."""
    found = nginx_binary()
    if found is None and INSTALL_SCRIPT.is_file():
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, timeout=600, stdin=subprocess.DEVNULL)
        found = nginx_binary()
    return found


def _sub_once(pattern: re.Pattern[str], repl, text: str, what: str) -> str:
    """``pattern.sub`` that must match exactly once (else deploy/nginx.conf changed shape)."""
    new, n = pattern.subn(repl, text)
    if n != 1:
        raise ValueError(f"deploy/nginx.conf: expected exactly one {what} line, found {n}")
    return new


def render_config(servers: Sequence[str], listen_port: int, prefix: Path, *, template: str | None = None,
                  server_params: str | None = None) -> str:
    """deploy/nginx.conf with its upstream servers replaced by ``servers`` ("127.0.0.1:PORT"), listening
    on 127.0.0.1:``listen_port``, with pid, logs and temp files under ``prefix`` (which must exist).

    Every upstream server gets the production line's parameters (``max_fails``/``fail_timeout``)
    unless ``server_params`` replaces them (a test-only override, e.g. ``"max_fails=0"``).
    Raises ValueError when a line it must rewrite is missing or repeated.
    """
    text = DEPLOY_CONF.read_text() if template is None else template
    matches = list(_UPSTREAM_SERVER.finditer(text))
    if not matches:
        raise ValueError("deploy/nginx.conf: no 'server cutout-N:PORT ...;' line in the upstream block")
    if not servers:
        raise ValueError("at least one upstream server is needed")
    indent = matches[0]["indent"]
    params = matches[0]["params"] if server_params is None else " " + server_params.strip()
    block = "\n".join(f"{indent}server {s}{params};" for s in servers)
    # the first production server line becomes the whole list; the others go, with their newline
    pieces, pos = [], 0
    for i, m in enumerate(matches):
        pieces.append(text[pos:m.start()])
        if i == 0:
            pieces.append(block)
            pos = m.end()
        else:
            pos = m.end() + (1 if text.startswith("\n", m.end()) else 0)
    text = "".join(pieces) + text[pos:]
    prefix = Path(prefix).resolve()
    logs, tmp = prefix / "logs", prefix / "tmp"
    text = _sub_once(_LISTEN, lambda m: f"{m['indent']}listen 127.0.0.1:{listen_port};", text, "'listen 80;'")
    text = _sub_once(_PID, f"pid {prefix / 'nginx.pid'};", text, "top-level 'pid'")
    text = _sub_once(_ERROR_LOG, f"error_log {logs / 'error.log'} warn;", text, "top-level 'error_log'")
    text = _sub_once(_ACCESS_LOG, lambda m: f"{m['indent']}access_log {logs / 'access.log'} {m['fmt']};",
                     text, "'access_log /dev/stdout FORMAT;'")
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    temp = "\n    # tests/nginx.py: temp files under the prefix\n" + temp
    text = _sub_once(_HTTP_OPEN, lambda m: m.group(0) + temp, text, "'http {'")
    head = "# rendered by tests/nginx.py from deploy/nginx.conf\ndaemon off;\nmaster_process on;\n"
    if os.geteuid() == 0:
        # As root nginx would run its workers as "nobody", who cannot enter the private (0700) temp
        # prefix to write request bodies there; these are throw-away test processes.
        head += "user root;\n"
    return head + text


class NginxBalancer:
    """nginx (``nginx -p PREFIX -c CONF``, foreground master) balancing over ``servers``.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``prefix``, ``conf`` (the rendered
    file), ``proc``. ``access_log()`` parses the access log (one dict per request, with
    ``upstream``: the replicas tried, in order). ``stop()`` is idempotent.
    """

    def __init__(self, servers: Sequence[str], prefix: Path, *, port: int | None = None,
                 server_params: str | None = None, startup_timeout: float = 15.0) -> None:
        self.servers = list(servers)
        self.prefix = Path(prefix).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_params = server_params
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.conf = self.prefix / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.access_log_path = self.prefix / "logs" / "access.log"

    def start(self) -> Self:
        """Render the config, check it (``nginx -t``), start nginx and wait until it answers."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (scripts/install_nginx.sh installs it)")
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_config(self.servers, self.port, self.prefix,
                                           server_params=self.server_params))
        cmd = [binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)]
        check = subprocess.run(cmd + ["-t", "-q"], check=False, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr.strip()}")
        stderr = open(self.prefix / "logs" / "stderr.log", "wb")  # noqa: SIM115 - kept for the process
        try:
            # own session: stop() can signal the master's whole group (master and workers) and nothing else
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                         start_new_session=True)
        finally:
            stderr.close()
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self.proc.returncode}: {self.errors()}")
            return self._answers()

        try:
            wait_until(answers, timeout=self.startup_timeout, message="nginx answers /nginx-health")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"nginx did not answer in time: {self.errors()}") from None
        return self

    def _answers(self) -> bool:
        """True when nginx itself answers ``/nginx-health`` (no replica is asked: a probe must not
        count as a replica failure in the passive health checks)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/nginx-health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def errors(self) -> str:
        """The error log's text (warnings included: failed upstreams, disabled servers)."""
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    def access_log(self) -> list[dict[str, str]]:
        """One dict per logged request: ``request``, ``status``, ``time`` (``$time_local``), and the log
        format's key=value fields (``upstream``, ``ustatus``, ``rid``, ``urt``, ``rt``). nginx writes a
        line when its request ends."""
        try:
            lines = self.access_log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            m = re.search(r'"(?P<request>[^"]*)" (?P<status>\d{3}) ', line)
            if not m:
                continue
            entry = {"request": m["request"], "status": m["status"]}
            when = re.search(r"\[([^\]]+)\]", line[: m.start()])
            if when:
                entry["time"] = when.group(1)
            for key, quoted, bare in _LOG_FIELD.findall(line[m.end():]):
                entry[key] = quoted if quoted or not bare else bare
            out.append(entry)
        return out

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGTERM to the master, which stops its workers); SIGKILL to the group if it
        hangs. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangingAddress:
    """A 127.0.0.1 port whose connects hang, as to a host that left the network.

    When a container stops, its address leaves the network: a SYN sent there is never answered, so
    ``connect()`` hangs until the caller's timeout rather than being refused. Here the same happens on
    loopback without root or a firewall rule: a listening socket whose accept queue (backlog 0) is
    filled by one connection that is never accepted, so the kernel drops every further SYN.
    ``port`` may be one just freed by a stopped process (the socket sets SO_REUSEADDR), so the
    address that worked a moment ago is the one that now hangs. :meth:`hangs` checks that the
    kernel behaves so (a caller skips when it does not). Close with :meth:`close` or ``with``.
    """

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._queued: list[socket.socket] = []
        # fill the accept queue: the first connection is queued (completed, never accepted); once
        # the queue is full, connects that are still pending stay so
        for _ in range(2):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", self.port))
            self._queued.append(client)

    def hangs(self, timeout: float = 0.5) -> bool:
        """True when a connect to the address neither completes nor fails within ``timeout``."""
        with socket.socket() as probe:
            probe.settimeout(timeout)
            try:
                probe.connect(("127.0.0.1", self.port))
            except TimeoutError:
                return True
            except OSError:
                return False
            return False

    def close(self) -> None:
        for client in self._queued:
            client.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
