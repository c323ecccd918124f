"""Stateless replicas behind nginx, tested for real.

Two replicas are real ``cutout serve --port P --cube-dir DIR`` subprocesses (the venv's console
script) over the session's synthetic cubes; nginx runs with the production ``deploy/nginx.conf``
rendered for loopback (tests/nginx.py). Checked through nginx only:

- astroquery's ``Tesscut``, pointed at nginx's base URL, gets the sectors and cutouts whose FLUX
  equals a direct engine cut of the same cube;
- a POST that reached a replica which then failed is not sent again, a GET is (the retry rule);
- SIGKILL of one replica in the middle of a 500-request GET load loses no request it had not begun
  to answer: every such answer is a 200 with a valid body (nginx retries them on the other
  replica); an answer the killed replica had begun sending is cut short, which the client sees (a
  body shorter than its Content-Length), never a partial file that looks whole;
- the killed replica, restarted on its port, gets requests again once nginx's fail_timeout is over.
- a replica stopped gracefully whose address then vanishes (connects hang, as after ``docker stop``)
  costs only nginx's short connect timeout, on at most max_fails requests per fail_timeout.

And one replica of several processes (``cutout serve --workers 2``, no nginx): both processes
answer on the one port, with the same cutouts, and SIGTERM stops them all.

Skipped when nginx is not installed and scripts/install_nginx.sh cannot install it.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    from tests.nginx import HangingAddress, NginxBalancer, ensure_nginx, free_port
    from tests.polling import wait_until
except ImportError:  # pragma: no cover - tests/ itself on sys.path
    from nginx import HangingAddress, NginxBalancer, ensure_nginx, free_port
    from polling import wait_until

from core.synthetic.ffis import DEMO_DEC, DEMO_RA

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals, loopback")]

#: deploy/nginx.conf's passive health check window (max_fails=2 fail_timeout=5s)
FAIL_TIMEOUT_S = 5.0
LOAD_REQUESTS = 500
LOAD_CONCURRENCY = 8
KILL_AFTER = 250  # completed requests before one replica is SIGKILLed: half way
ASTROCUT = "/tesscut/api/v0.1/astrocut"
SECTOR = "/tesscut/api/v0.1/sector"
#: TESScut member name of a 5x5 cutout (tesscut-clients.md); group 1 is the sector
MEMBER_5X5 = re.compile(r"^tess-s00(38|11)-2-2_\d+\.\d{6}_-?\d+\.\d{6}_5x5_astrocut\.fits$")


def _cutout_bin() -> str | None:
    """The venv's ``cutout`` console script (next to the running interpreter), or on PATH."""
    here = Path(sys.executable).with_name("cutout")
    return str(here) if here.is_file() else shutil.which("cutout")


class Replica:
    """One ``cutout serve`` subprocess on 127.0.0.1:``port`` (its own session, output to ``log``)."""

    def __init__(self, name: str, port: int, cube_dir: Path, work_dir: Path, log: Path,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.name, self.port, self.cube_dir, self.work_dir, self.log = name, port, cube_dir, work_dir, log
        self.extra_args = tuple(extra_args)
        self.addr = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Replica:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
        env.update(CUTOUT_HOST="127.0.0.1", CUTOUT_WORK_DIR=str(self.work_dir), CUTOUT_LOG_LEVEL="warning",
                   CUTOUT_WORKERS="2", PYTHONUNBUFFERED="1")
        cmd = [_cutout_bin(), "serve", "--port", str(self.port), "--cube-dir", str(self.cube_dir), *self.extra_args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until ``/health`` answers 200 directly (not through nginx); returns the monotonic time
        (for the figures printed at the end)."""

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:]
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {tail}")
            try:
                return _get(self.port, "/health", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout=timeout, interval=0.05,
                   message=lambda: f"{self.name} did not start: {self.log.read_text()[-2000:]}")
        return time.monotonic()

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-request, as in a crash or an OOM kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 15 s; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _get(port: int, path: str, *, headers: dict[str, str] | None = None, timeout: float = 30,
         method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _answered_by(headers: dict[str, str]) -> list[str]:
    """The replicas nginx tried for a request, in order (its X-Upstream header, "a, b")."""
    return [a.strip() for a in headers.get("x-upstream", "").split(",") if a.strip()]


@dataclass
class Topology:
    """Two replicas and nginx; ``port`` is nginx's."""

    a: Replica
    b: Replica
    lb: NginxBalancer
    cubes: dict[str, Path]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.lb.port


@pytest.fixture(scope="module")
def topology(request, tmp_path_factory) -> Iterator[Topology]:
    """Replicas A and B (``cutout serve`` subprocesses) behind nginx; everything stopped at the end."""
    t0 = time.monotonic()
    if ensure_nginx() is None:
        pytest.skip("nginx is not installed and scripts/install_nginx.sh could not install it")
    if _cutout_bin() is None:
        pytest.skip("the 'cutout' console script is not installed (scripts/bootstrap.sh)")
    # only now: a skipped module does not build the session's cubes
    cubes, _image_root, _images = request.getfixturevalue("service_data")
    root = tmp_path_factory.mktemp("topology")
    cube_dir = cubes["spoc38"].parent
    replicas = [Replica(name, free_port(), cube_dir, root / f"work-{name}", root / f"{name}.log")
                for name in ("a", "b")]
    lb = None
    try:
        for r in replicas:
            r.work_dir.mkdir()
            r.start()
        for r in replicas:
            r.wait_ready()
        lb = NginxBalancer([r.addr for r in replicas], root / "nginx").start()
        topo = Topology(replicas[0], replicas[1], lb, cubes)
        yield topo
        print(f"\ntopology figures: {json.dumps(topo.figures)}; module {time.monotonic() - t0:.1f} s")
    finally:
        if lb is not None:
            lb.stop()
        for r in replicas:
            r.stop()


# ------------------------------------------------------------------------------------------
# a real client through the balancer
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tesscut(topology):
    """astroquery's ``Tesscut`` pointed at nginx's base URL only (restored afterwards)."""
    pytest.importorskip("astroquery")
    from astroquery.mast import Tesscut
    from astroquery.mast.services import ServiceAPI

    saved = ServiceAPI.SERVICE_URL
    ServiceAPI.SERVICE_URL = topology.lb.url
    Tesscut.__init__()
    try:
        yield Tesscut
    finally:
        ServiceAPI.SERVICE_URL = saved
        Tesscut.__init__()


def _engine_flux(cube: Path, coord, size: int) -> np.ndarray:
    """FLUX of a direct engine cut (no HTTP): what every replica must serve."""
    from core.tpf.cut import CutoutFactory

    return np.asarray(CutoutFactory().cube_cut(str(cube), coord, size, memory_only=True)[1].data["FLUX"])


def test_astroquery_through_nginx_matches_a_direct_cut(topology, tesscut, tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    coord = SkyCoord(DEMO_RA, DEMO_DEC, unit="deg")
    sectors = tesscut.get_sectors(coordinates=coord)  # a form POST through nginx
    assert sorted(sectors["sector"]) == [11, 38]
    assert set(sectors["sectorName"]) == {"tess-s0011-2-2", "tess-s0038-2-2"}

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*product.*")
        manifest = tesscut.download_cutouts(coordinates=coord, size=5, path=str(tmp_path))  # GET, all sectors
    assert len(manifest) == 2
    cube_of = {38: topology.cubes["spoc38"], 11: topology.cubes["spoc11"]}
    for local in manifest["Local Path"]:
        with fits.open(local) as hdul:
            sector = int(hdul[0].header["SECTOR"])
            flux = np.asarray(hdul[1].data["FLUX"])
        expected = _engine_flux(cube_of[sector], coord, 5)
        assert flux.shape == expected.shape == (10, 5, 5)
        np.testing.assert_array_equal(flux, expected)


def test_both_replicas_answer_with_intact_zips(topology):
    seen: set[str] = set()
    for i in range(6):
        status, headers, body = _get(topology.port, f"{ASTROCUT}?ra={DEMO_RA}&dec={DEMO_DEC}&x=5&y=5&units=px"
                                                    f"&sector=38", headers={"X-Request-ID": f"rr-{i}"})
        assert status == 200 and headers["content-type"] == "application/zip"
        assert "accept-ranges" not in headers  # tesscut-clients.md: the client would resume with Range
        assert headers["x-request-id"] == f"rr-{i}"  # nginx forwards the client's id to the replica
        [addr] = _answered_by(headers)
        seen.add(addr)
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            assert zf.testzip() is None
    assert seen == {topology.a.addr, topology.b.addr}  # round robin over both
    status, headers, body = _get(topology.port, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok" and _answered_by(headers)


# ------------------------------------------------------------------------------------------
# the retry rule: GETs are retried on the other replica, a POST that reached a replica is not
# ------------------------------------------------------------------------------------------


class _HangUp:
    """A fake replica that reads a request's headers and closes without answering (a crash mid-request)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.requests.append(data.split(b"\r\n", 1)[0])

    def close(self) -> None:
        self.sock.close()


def test_get_is_retried_post_is_not(topology, tmp_path):
    hangup = _HangUp()
    # max_fails=0 (test only): the fake stays in the rotation, so both methods surely meet it
    lb = NginxBalancer([hangup.addr, topology.a.addr], tmp_path / "nginx-retry", server_params="max_fails=0")
    lb.start()
    try:
        # one method at a time (round robin alternates, so a few requests of each meet the fake)
        query = f"ra={DEMO_RA}&dec={DEMO_DEC}&radius=0"
        post_results = [_get(lb.port, SECTOR, method="POST", body=query.encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) for _ in range(4)]
        get_results = [_get(lb.port, f"{SECTOR}?{query}") for _ in range(4)]
    finally:
        lb.stop()
        hangup.close()
    # a POST the fake did not get reached the real replica
    assert all(s == 200 for s, h, _b in post_results if _answered_by(h) == [topology.a.addr])
    # every GET answered 200; those that met the fake first went on to the real replica
    assert all(status == 200 for status, _h, _b in get_results)
    retried_gets = [h for _s, h, _b in get_results if _answered_by(h) == [hangup.addr, topology.a.addr]]
    assert retried_gets
    # a POST that the fake received was not sent again: nginx's own 502, in the service's error shape
    hung_posts = [(s, h, b) for s, h, b in post_results if hangup.addr in _answered_by(h)]
    assert hung_posts
    for status, headers, body in hung_posts:
        assert status == 502 and _answered_by(headers) == [hangup.addr]
        assert json.loads(body)["error"]["code"] == "bad_gateway" and json.loads(body)["msg"]
    assert sum(1 for line in hangup.requests if line.startswith(b"POST")) == len(hung_posts)
    assert sum(1 for line in hangup.requests if line.startswith(b"GET")) == len(retried_gets)


# ------------------------------------------------------------------------------------------
# a replica killed under load, then restarted
# ------------------------------------------------------------------------------------------


def _workload(n: int) -> list[str]:
    """Seeded mix of 5x5 cutouts (one or all sectors) and sector look-ups near the cube centres."""
    rng = random.Random(11)
    step = 21 / 3600  # about a pixel
    paths = []
    for _ in range(n):
        ra = DEMO_RA + rng.uniform(-15, 15) * step / 0.46  # cos(dec) ~ 0.46
        dec = DEMO_DEC + rng.uniform(-15, 15) * step
        kind = rng.random()
        if kind < 0.5:
            paths.append(f"{ASTROCUT}?ra={ra:.6f}&dec={dec:.6f}&x=5&y=5&units=px&sector=38")
        elif kind < 0.7:
            paths.append(f"{ASTROCUT}?ra={ra:.6f}&dec={dec:.6f}&x=5&y=5&units=px")
        else:
            paths.append(f"{SECTOR}?ra={ra:.6f}&dec={dec:.6f}&radius=0")
    return paths


def _body_problem(path: str, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """Why an answer is not a complete, valid 200 (None when it is)."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if path.startswith(SECTOR):
        names = {r["sectorName"] for r in json.loads(body)["results"]}
        return None if names == {"tess-s0011-2-2", "tess-s0038-2-2"} else f"sectors {names}"
    if headers.get("content-type") != "application/zip":
        return f"content-type {headers.get('content-type')}"
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            if zf.testzip() is not None:
                return "bad CRC"
            members = {name: zf.read(name) for name in zf.namelist()}
    except zipfile.BadZipFile as exc:
        return f"not a zip ({exc}), {len(body)} bytes"
    expected = ["38"] if "sector=38" in path else ["11", "38"]
    sectors = sorted(m[1] if (m := MEMBER_5X5.match(name)) else name for name in members)
    if sectors != expected:
        return f"members {sorted(members)}, expected sectors {expected}"
    for name, data in members.items():
        if not data.startswith(b"SIMPLE  =") or len(data) % 2880:
            return f"member {name}: not a FITS file"
    return None


@dataclass
class LoadRun:
    results: list[dict[str, Any]]
    kill_time: float
    duration_s: float


@pytest.fixture(scope="module")
def killed_under_load(topology) -> LoadRun:
    """Run the 500-request load through nginx; SIGKILL replica A once KILL_AFTER requests are done."""
    paths = _workload(LOAD_REQUESTS)
    results: list[dict[str, Any] | None] = [None] * len(paths)
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    kill_now = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", topology.port, timeout=60)
        try:
            while True:
                with lock:
                    i = state["next"]
                    if i >= len(paths):
                        return
                    state["next"] += 1
                started = time.monotonic()
                try:
                    conn.request("GET", paths[i], headers={"X-Request-ID": f"load-{i}"})
                    resp = conn.getresponse()
                    headers = {k.lower(): v for k, v in resp.getheaders()}
                    status, body = resp.status, resp.read()
                    if resp.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException) as exc:  # a lost request: counted, not retried
                    conn.close()
                    status, headers, body = 0, {}, repr(exc).encode()
                results[i] = {"path": paths[i], "status": status, "headers": headers, "body": body,
                              "started": started, "ended": time.monotonic()}
                with lock:
                    state["done"] += 1
                    if state["done"] == KILL_AFTER:
                        kill_now.set()
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(LOAD_CONCURRENCY)]
    for t in threads:
        t.start()
    assert kill_now.wait(60), "the load did not get going"
    kill_time = time.monotonic()
    topology.a.kill()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in results), "load threads did not finish"
    return LoadRun(results, kill_time, time.monotonic() - t0)  # type: ignore[arg-type]


def _cut_short(r: dict[str, Any], kill_time: float) -> bool:
    """An answer the killed replica had begun to send: ended after the kill, its body shorter than
    its head said (nginx cannot send it again once bytes have gone out to the client)."""
    return r["status"] == 0 and b"IncompleteRead" in r["body"] and r["ended"] >= kill_time


def test_sigkill_of_one_replica_under_load_loses_no_request_not_yet_answered(topology, killed_under_load):
    run = killed_under_load
    cut = {i for i, r in enumerate(run.results) if _cut_short(r, run.kill_time)}
    assert len(cut) <= LOAD_CONCURRENCY  # at most the requests in flight at the kill
    problems = {i: p for i, r in enumerate(run.results)
                if i not in cut and (p := _body_problem(r["path"], r["status"], r["headers"], r["body"]))}
    assert not problems, f"{len(problems)} of {len(run.results)} answers bad: {list(problems.items())[:5]}"
    whole = [(i, r) for i, r in enumerate(run.results) if i not in cut]
    a, b = topology.a.addr, topology.b.addr
    tried = [_answered_by(r["headers"]) for _, r in whole]
    assert all(t and t[-1] in (a, b) for t in tried)
    # the service echoed each request's id: every answer came from a replica, through nginx
    assert all(r["headers"]["x-request-id"] == f"load-{i}" for i, r in whole)
    before = [t[-1] for t, (_, r) in zip(tried, whole, strict=True) if r["ended"] < run.kill_time]
    assert {a, b} <= set(before), "both replicas served before the kill"
    after = [t for t, (_, r) in zip(tried, whole, strict=True) if r["started"] > run.kill_time]
    assert len(after) >= LOAD_REQUESTS - KILL_AFTER - 2 * LOAD_CONCURRENCY
    assert all(t[-1] == b for t in after), "nothing is answered by a dead replica"
    # the failover path was exercised: requests that went to A after the kill were retried on B
    retried = [t for t in tried if len(t) > 1]
    assert retried and all(t == [a, b] for t in retried)
    # nginx's log agrees, request by request (X-Request-ID) ...
    log = {e["rid"]: e for e in topology.lb.access_log() if e.get("rid", "").startswith("load-")}
    assert len(log) == LOAD_REQUESTS
    log_retried = {rid for rid, e in log.items() if "," in e["upstream"]}
    assert log_retried == {f"load-{i}" for (i, _), t in zip(whole, tried, strict=True) if len(t) > 1}
    # ... and the passive health check took A out after max_fails failures
    assert "upstream server temporarily disabled" in topology.lb.errors()
    to_dead = sum(1 for t in after if a in t)
    topology.figures.update(
        load_requests=len(run.results), load_duration_s=round(run.duration_s, 2),
        load_req_per_s=round(len(run.results) / run.duration_s, 1), killed_after=KILL_AFTER,
        retried=len(retried), retried_statuses=sorted({log[f"load-{i}"]["ustatus"]
                                                       for (i, _), t in zip(whole, tried, strict=True) if len(t) > 1}),
        cut_short_by_the_kill=len(cut),
        sent_after_kill=len(after), of_which_tried_dead_replica=to_dead)


def test_restarted_replica_rejoins(topology, killed_under_load):
    a = topology.a
    assert a.proc is not None and a.proc.poll() is not None  # killed by the load test
    restarted = time.monotonic()
    a.start()
    ready = a.wait_ready()
    # through nginx: sequential look-ups until one is answered by A again (nginx tries A again once
    # its fail_timeout is over; the deadline is generous, the figures below say how long it took)
    answers: list[tuple[int, list[str]]] = []

    def answered_by_a() -> bool:
        status, headers, _body = _get(topology.port, f"{SECTOR}?ra={DEMO_RA}&dec={DEMO_DEC}&radius=0")
        answers.append((status, _answered_by(headers)))
        return _answered_by(headers)[-1:] == [a.addr]

    wait_until(answered_by_a, timeout=FAIL_TIMEOUT_S + 60, interval=0.05,
               message=lambda: f"A never answered again through nginx: {answers[-3:]}")
    rejoined = time.monotonic()
    assert all(status == 200 for status, _ in answers)  # no request failed while A was out
    # A was out because nginx's passive health check took it out (not because nothing was sent)
    assert "upstream server temporarily disabled" in topology.lb.errors()
    # balanced again: both replicas share the next requests
    seen = [_answered_by(_get(topology.port, "/health")[1])[-1] for _ in range(10)]
    assert {topology.a.addr, topology.b.addr} == set(seen)
    topology.figures.update(
        restart_to_ready_s=round(ready - restarted, 2), ready_to_rejoined_s=round(rejoined - ready, 2),
        kill_to_rejoined_s=round(rejoined - killed_under_load.kill_time, 2),
        requests_while_waiting=len(answers))


def _nginx_setting(pattern: str) -> str:
    """The first match of ``pattern`` (one group) in deploy/nginx.conf, comments dropped."""
    text = "\n".join(line.split("#", 1)[0] for line in (ROOT / "deploy" / "nginx.conf").read_text().splitlines())
    match = re.search(pattern, text)
    assert match, f"deploy/nginx.conf has no {pattern!r}"
    return match.group(1)


def _nginx_seconds(value: str) -> float:
    """An nginx time ("500ms", "5s", "2m", "3") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0}[unit]


def _logged_at(entry: dict[str, str]) -> float:
    """When nginx logged a request (its ``$time_local``, whole seconds), as a POSIX time."""
    from datetime import datetime

    return datetime.strptime(entry["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()


#: the connect timeout deploy/nginx.conf used to have, which a stopped replica cost every request sent to it
OLD_CONNECT_TIMEOUT_S = 3.0


def test_stopped_replica_whose_connects_hang_costs_no_long_wait(topology, tmp_path):
    """A replica stopped as ``docker stop`` stops one: it shuts down gracefully, then its address
    leaves the network, so connects to it hang (no refusal). Every request still succeeds on the
    other replica; those that met the stopped one waited nginx's short proxy_connect_timeout on it,
    not a dead-host timeout; and after max_fails such waits the passive health check keeps it out."""
    connect_timeout = _nginx_seconds(_nginx_setting(r"proxy_connect_timeout\s+(\w+);"))
    max_fails = int(_nginx_setting(r"server\s+cutout-1:\d+\s[^;]*max_fails=(\d+)"))
    fail_timeout = _nginx_seconds(_nginx_setting(r"server\s+cutout-1:\d+\s[^;]*fail_timeout=(\w+)"))
    root = tmp_path
    c = Replica("c", free_port(), topology.cubes["spoc38"].parent, root / "work-c", root / "c.log")
    c.work_dir.mkdir()
    c.start()
    lb = hung = None
    try:
        c.wait_ready()
        a = topology.a  # up again after the kill tests (or never killed when run alone)
        if a.proc is None or a.proc.poll() is not None:
            a.start()
        a.wait_ready()
        lb = NginxBalancer([a.addr, c.addr], root / "nginx-stop").start()  # production max_fails/fail_timeout
        query = f"{ASTROCUT}?ra={DEMO_RA}&dec={DEMO_DEC}&x=5&y=5&units=px&sector=38"
        warm = [_answered_by(_get(lb.port, query)[1])[-1] for _ in range(4)]
        assert set(warm) == {a.addr, c.addr}, "both replicas answer before the stop"
        c.stop()  # SIGTERM: a graceful stop, as docker stop sends
        hung = HangingAddress(c.port)  # ... then the address goes: connects to it now hang
        if not hung.hangs():
            pytest.skip("cannot make connects to a loopback port hang here (a full accept queue is refused "
                        "or answered instead of dropped), so a vanished replica cannot be imitated")
        started = time.monotonic()
        results = []
        for i in range(12):
            status, headers, body = _get(lb.port, query, headers={"X-Request-ID": f"stop-{i}"}, timeout=60)
            results.append((status, _answered_by(headers), body))
        elapsed = time.monotonic() - started  # for the figures only
    finally:
        if lb is not None:
            lb.stop()
        if hung is not None:
            hung.close()
        c.stop()
    # every request answered by the running replica, with a whole zip
    for status, tried, body in results:
        assert status == 200 and tried[-1] == a.addr, (status, tried, body[:200])
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            assert zf.testzip() is None
    # the stopped replica was met (so the case was exercised) and then left out: at most max_fails
    # requests per fail_timeout window tried it. The windows are counted on nginx's own clock (its
    # access log's timestamps, whole seconds, the span rounded up), the one its health check runs on
    met = [tried for _s, tried, _b in results if c.addr in tried]
    assert met and all(tried == [c.addr, a.addr] for tried in met)
    log = {e["rid"]: e for e in lb.access_log() if e.get("rid", "").startswith("stop-")}
    assert len(log) == len(results)
    logged = sorted(_logged_at(e) for e in log.values())
    span = logged[-1] - logged[0] + 1 + max(float(e["rt"]) for e in log.values())
    assert len(met) <= max_fails * (1 + int(span // fail_timeout)), (len(met), span)
    # nginx gave up on it by its connect timeout, every time: its error log has one connect timeout
    # per request that met it (none ended another way, such as the read timeout), and its access
    # log no completed connect to it. deploy/nginx.conf's proxy_connect_timeout is below the old
    # 3 s (test_deploy_files.py checks it is at most 1 s)
    errors = lb.errors()
    assert errors.count("upstream timed out (110: Connection timed out) while connecting to upstream") == len(met)
    assert "upstream server temporarily disabled" in errors
    assert connect_timeout < OLD_CONNECT_TIMEOUT_S
    waits = []
    for entry in log.values():
        addrs = [x.strip() for x in entry["upstream"].split(",")]
        if c.addr in addrs:
            spent = [x.strip() for x in entry["urt"].split(",")][addrs.index(c.addr)]
            connected = [x.strip() for x in entry["uct"].split(",")][addrs.index(c.addr)]
            assert connected == "-", entry  # the connect never completed
            waits.append(float(spent))
    assert len(waits) == len(met)
    topology.figures.update(stopped_replica_met=len(met), stopped_replica_waits_s=waits,
                            requests_after_stop=len(results), after_stop_s=round(elapsed, 2))


# ------------------------------------------------------------------------------------------
# one replica, several processes
# ------------------------------------------------------------------------------------------


def test_serve_workers_share_one_port(request, tmp_path):
    """``cutout serve --workers 2``: two processes answer on one port with identical cutouts, a
    burst of connections is balanced between them, a killed process is replaced; SIGTERM to the
    supervisor stops every process of the replica."""
    if _cutout_bin() is None:
        pytest.skip("the 'cutout' console script is not installed (scripts/bootstrap.sh)")
    cubes, _image_root, _images = request.getfixturevalue("service_data")
    work = tmp_path / "work"
    work.mkdir()
    replica = Replica("multi", free_port(), cubes["spoc38"].parent, work, tmp_path / "multi.log",
                      extra_args=("--workers", "2"))
    replica.start()
    try:
        replica.wait_ready()
        bodies: dict[int, set[bytes]] = {}
        lock = threading.Lock()
        query = f"{ASTROCUT}?ra={DEMO_RA}&dec={DEMO_DEC}&x=5&y=5&sector=38"
        deadline = time.monotonic() + 30

        def client() -> None:
            while time.monotonic() < deadline:
                with lock:
                    if len(bodies) >= 2 and all(bodies.values()):
                        return
                status, _h, raw = _get(replica.port, "/health")
                assert status == 200
                pid = json.loads(raw)["process"]
                status, _h, zipped = _get(replica.port, query)
                assert status == 200
                with zipfile.ZipFile(io.BytesIO(zipped)) as z:
                    member = z.read(z.namelist()[0])
                with lock:
                    bodies.setdefault(pid, set()).add(member)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(bodies) == 2, f"processes that answered: {sorted(bodies)}"
        # a burst of connections opened at once (a balancer's keep-alive pool) is spread over both
        burst = [http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30) for _ in range(32)]
        for conn in burst:
            conn.connect()
        served: dict[int, int] = {}
        for conn in burst:
            conn.request("GET", "/health")
            pid = json.loads(conn.getresponse().read())["process"]
            served[pid] = served.get(pid, 0) + 1
            conn.close()
        assert len(served) == 2 and min(served.values()) >= 4, f"connections per process: {served}"
        # a process that dies is replaced (connections waiting in its own queue when it died are
        # reset, as the kernel drops a closed socket's backlog: a balancer retries those)
        victim = min(served)
        os.kill(victim, signal.SIGKILL)
        seen: set[int] = set()

        def replaced() -> bool:
            seen.clear()
            for _ in range(16):
                try:
                    status, _h, raw = _get(replica.port, "/health")
                except OSError:
                    continue
                assert status == 200
                seen.add(json.loads(raw)["process"])
            return len(seen) == 2 and victim not in seen

        wait_until(replaced, timeout=30, interval=0.2, message=lambda: f"no replacement for process {victim}: {seen}")
        assert replica.proc is not None and replica.proc.pid not in bodies  # the supervisor serves nothing
        assert len(set().union(*bodies.values())) == 1  # every process cuts the same bytes
        group = replica.proc.pid  # its own session: the supervisor and its children
    finally:
        replica.stop()

    def group_gone() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True  # no process of the replica is left
        return False

    wait_until(group_gone, timeout=15, interval=0.1, message="a server process outlived SIGTERM to the supervisor")
