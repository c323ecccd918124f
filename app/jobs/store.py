"""Jobs on disk: one folder per job under ``{work_dir}/jobs``, the disk being the one truth.

Each job is a folder ``{root}/{job_id}/`` holding ``job.json`` (its :class:`JobRecord`, replaced
atomically on every change), ``targets.csv`` (the target table, in the format ``cutout batch``
reads), ``out/`` (the target pixel files and the batch manifest that :mod:`core.batch.cutouts`
writes) and, once the job is over, ``manifest.csv`` and ``results.json`` (what is served).

Every change is a read-modify-write of ``job.json`` under an exclusive ``flock`` of the job's
``job.lock``, so the request handlers of several server processes and the one job runner never
lose each other's changes. Reads need no lock (a reader sees the old or the new file, never half
of one) and are cached by the file's ``stat``. A restarted service therefore knows every job.

A job is destroyed by renaming its folder into ``{root}/.trash`` (it is gone at once for every
reader) and removing it there; a task still writing into the old path after that recreates
folders without a ``job.json``, which :meth:`JobStore.remove_orphans` removes after a grace time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import enum
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import NotFoundError
from core.storage.atomic import write_bytes_atomic

__all__ = ["ACTIVE", "FINAL", "Changes", "JobRecord", "JobStore", "Phase", "valid_job_id"]

log = logging.getLogger("app.jobs")

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Phase(enum.StrEnum):
    """UWS 1.1 execution phases (those this service enters, and the others a filter may name)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


#: phases in which a job may still change by itself (a blocking poll waits only in these)
ACTIVE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
#: phases a job never leaves
FINAL = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the form of this service's job ids (anything else is not a job)."""
    return bool(_JOB_ID.match(job_id))


@dataclass
class JobRecord:
    """One job's state, as ``job.json`` holds it (times are Unix seconds, UTC).

    ``params`` are the normalised cutout parameters (``x``, ``y``, ``units``, ``sectors``,
    ``product``, ``source``, ``targets``); ``progress`` counts targets and manifest rows done;
    ``estimate`` is what the job was expected to produce when created (pairs, bytes).
    """

    job_id: str
    owner: str
    created: float
    destruction: float
    execution_duration: int
    phase: str = Phase.PENDING
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    queued: float | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    abort_requested: bool = False
    elapsed_s: float = 0.0
    progress: dict[str, int] = field(default_factory=dict)
    estimate: dict[str, int] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> JobRecord:
        values = json.loads(data)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class Changes:
    """Wakes asynchronous waiters when a job's phase changes; :meth:`notify` may be called from any
    thread (the runner's), waiters live on event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set at the next change of ``job_id`` (on the running loop)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiters[job_id]

    def notify(self, job_id: str) -> None:
        """Wake every waiter of ``job_id``."""
        with self._lock:
            entries = list(self._waiters.get(job_id, ()))
        for loop, event in entries:
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def waiting(self) -> int:
        """Waiters registered now."""
        with self._lock:
            return sum(len(v) for v in self._waiters.values())


class JobStore:
    """The jobs under ``root``: create, read (cached), change under a lock, list, destroy.

    Parameters
    ----------
    root : path
        ``{work_dir}/jobs``; created if missing.
    changes : Changes, optional
        Told of every phase change (blocking polls wait on it).
    """

    RECORD = "job.json"
    LOCK = "job.lock"
    TARGETS = "targets.csv"
    OUT = "out"
    MANIFEST = "manifest.csv"
    RESULTS = "results.json"

    def __init__(self, root: str | os.PathLike, changes: Changes | None = None) -> None:
        self.root = Path(root)  # made by the first job: an app built without running makes no folder
        self.trash = self.root / ".trash"
        self.changes = changes or Changes()
        self._cache: dict[str, tuple[tuple[int, int, int], JobRecord]] = {}
        self._cache_lock = threading.Lock()

    # -- paths ---------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise NotFoundError(f"no job {job_id[:80]!r}", field="job_id")
        return self.root / job_id

    def path(self, job_id: str, name: str) -> Path:
        """A file of the job (``RECORD``, ``TARGETS``, ``OUT``, ``MANIFEST``, ``RESULTS``)."""
        return self.job_dir(job_id) / name

    # -- create and read ------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        """A fresh job id: 128 random bits, URL-safe (the id is what lets a client reach a job)."""
        return secrets.token_urlsafe(16)

    def create(self, record: JobRecord, targets: bytes) -> JobRecord:
        """Write a new job: its target table, then its record (the job exists from then on)."""
        folder = self.job_dir(record.job_id)
        self.root.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=False, exist_ok=False)
        write_bytes_atomic(targets, folder / self.TARGETS, field="targets")
        write_bytes_atomic(record.to_json(), folder / self.RECORD, field="job")
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is no such job."""
        if not valid_job_id(job_id):
            return None
        path = self.root / job_id / self.RECORD
        try:
            st = os.stat(path)
        except OSError:
            with self._cache_lock:
                self._cache.pop(job_id, None)
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._cache_lock:
            hit = self._cache.get(job_id)
        if hit is not None and hit[0] == key:
            return copy.deepcopy(hit[1])  # callers may change their copy; the cached one stays
        try:
            record = JobRecord.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            log.warning("job %s: unreadable record (%s)", job_id, exc)
            return None
        with self._cache_lock:
            self._cache[job_id] = (key, record)
        return copy.deepcopy(record)

    def require(self, job_id: str) -> JobRecord:
        """The job's record; ``NotFoundError`` (404) when there is none."""
        record = self.get(job_id)
        if record is None:
            raise NotFoundError(f"no job {job_id[:80]!r} (it never existed, or it was destroyed)", field="job_id")
        return record

    def has_jobs(self) -> bool:
        """Whether any job folder exists (a service with none starts no runner)."""
        try:
            return any(not e.name.startswith(".") for e in os.scandir(self.root))
        except OSError:
            return False

    def list(self) -> list[JobRecord]:
        """Every job's record."""
        records = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            record = self.get(entry.name)
            if record is not None:
                records.append(record)
        return records

    # -- change ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, job_id: str) -> Iterator[None]:
        folder = self.job_dir(job_id)
        try:
            fd = os.open(folder / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise NotFoundError(f"no job {job_id[:80]!r}", field="job_id") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update(self, job_id: str, change: Callable[[JobRecord], Any]) -> JobRecord:
        """Apply ``change(record)`` (it edits the record in place) under the job's lock and save
        the record atomically; return it. ``change`` may raise to leave the job as it was.

        Raises
        ------
        NotFoundError
            There is no such job (or it was destroyed meanwhile).
        """
        with self._locked(job_id):
            path = self.root / job_id / self.RECORD
            try:
                record = JobRecord.from_json(path.read_bytes())
            except FileNotFoundError:
                raise NotFoundError(f"no job {job_id[:80]!r}", field="job_id") from None
            before = record.phase
            change(record)
            write_bytes_atomic(record.to_json(), path, field="job")
        if record.phase != before:
            self.changes.notify(job_id)
        return record

    # -- destroy --------------------------------------------------------------------------------
    def delete(self, job_id: str) -> bool:
        """Destroy the job: its folder leaves the job list at once (moved to the trash) and is
        removed; False if there was no such job."""
        if not valid_job_id(job_id):
            return False
        self.trash.mkdir(exist_ok=True)
        target = self.trash / f"{job_id}.{secrets.token_hex(4)}"
        try:
            with self._locked(job_id):
                os.rename(self.root / job_id, target)
        except (FileNotFoundError, NotFoundError):
            return False
        with self._cache_lock:
            self._cache.pop(job_id, None)
        self.changes.notify(job_id)
        shutil.rmtree(target, ignore_errors=True)
        return True

    def remove_orphans(self, grace_s: float) -> int:
        """Remove folders without a record older than ``grace_s`` (left by tasks that were still
        writing when their job was destroyed) and whatever the trash holds; return how many."""
        removed = 0
        now = time.time()
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0
        for entry in entries:
            if entry.name == ".trash":
                for item in list(os.scandir(entry.path)):
                    shutil.rmtree(item.path, ignore_errors=True)
                    removed += 1
                continue
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            if os.path.exists(os.path.join(entry.path, self.RECORD)):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if age > grace_s:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed
