"""The job runner: plans each job with :mod:`core.batch.cutouts` and runs its cutouts on Dask.

One runner per work dir: the process that holds ``{jobs}/.runner.lock`` (an exclusive ``flock``)
runs every job; other server processes on the same work dir serve the jobs' documents from disk
and take the lock over if that process dies. The runner is one thread (never the HTTP worker
threads, never the request budget):

- it finds jobs to run by scanning the store (every second, or at once when this process's
  handlers wake it), so a job created by any process, or left QUEUED or EXECUTING by a stopped
  service, is run;
- it admits up to ``jobs_max_running`` jobs at a time, fairly between owners
  (:func:`app.jobs.fair.next_admission`), and plans each on a helper thread with
  :func:`core.batch.cutouts.plan_batch` over the current catalog (local or S3 cubes): a previous
  run's manifest makes the outputs it finished ``skipped``, so an interrupted job resumes where
  it stopped;
- it keeps at most ``jobs_tasks_in_flight`` :func:`core.batch.cutouts.cut_target` tasks on the
  Dask cluster, handing free slots to owners round-robin, ``jobs_quantum`` tasks a turn; the
  cluster is a LocalCluster of ``jobs_dask_workers`` processes started when the first task is
  due, or the scheduler at ``dask_scheduler``;
- results come back through the futures' done callbacks into the thread's inbox and are gathered
  in batches; each job's progress and manifest are saved every ``jobs_checkpoint_s``;
- a job over its ``executionDuration`` or over ``jobs_max_result_bytes`` is aborted; an abort
  request, a deleted job, or an expired one (the reaper, every ``jobs_reap_s``) cancels its tasks.

When a job's last task is in, its manifest and results list are written (a helper thread) and
only then is its phase set, so a client that sees COMPLETED can fetch everything. On shutdown the
unfinished jobs keep their phase (EXECUTING) and a manifest of what they finished; the next runner
resumes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.jobs import results
from app.jobs.fair import Queued, RoundRobin, next_admission
from app.jobs.store import FINAL, JobRecord, JobStore, Phase
from core.batch.cluster import dask_client
from core.batch.cutouts import BatchPlan, BatchTask, cut_target, plan_batch, record_result
from core.batch.manifest import write_manifest
from core.batch.targets import describe_error
from core.errors import NotFoundError

__all__ = ["JobRunner"]

log = logging.getLogger("app.jobs")

#: seconds between scans of the store (new jobs from other processes, abort requests, deletions)
SCAN_S = 1.0
#: how long a folder without a record may stay (a task may still be writing into it)
ORPHAN_GRACE_S = 120.0


@dataclass
class _Running:
    """A job the runner has admitted."""

    job_id: str
    owner: str
    record: JobRecord
    admitted: float
    plan: BatchPlan | None = None
    pending: deque = field(default_factory=deque)
    inflight: set = field(default_factory=set)
    remaining: Counter = field(default_factory=Counter)  # unfinished rows per target index
    counts: Counter = field(default_factory=Counter)
    dirty: bool = False
    saved: float = 0.0

    def progress(self) -> dict[str, int]:
        c = self.counts
        plan = self.plan
        return {"targets": plan.targets if plan else 0, "targets_done": c["targets_done"],
                "rows": len(plan.rows) if plan else 0, "rows_done": c["rows_done"], "ok": c["ok"],
                "skipped": c["skipped"], "errors": c["error"], "bytes": c["bytes"]}


class JobRunner:
    """Runs the jobs of a :class:`~app.jobs.store.JobStore` on Dask (see the module docstring).

    Parameters
    ----------
    store : JobStore
    settings : app.settings.Settings
    catalog : callable
        Returns the current catalog snapshot (:class:`core.catalog.snapshot.Catalog`).
    s3 : core.storage.s3.S3Config, optional
        Handed to the tasks for ``s3://`` cubes.
    scrub : callable
        Removes server paths from messages a client sees.
    """

    def __init__(self, store: JobStore, settings: Any, catalog: Callable[[], Any], s3: Any = None,
                 scrub: Callable[[str], str] = lambda text: text) -> None:
        self.store = store
        self.settings = settings
        self.catalog = catalog
        self.s3 = s3
        self.scrub = scrub
        self.limits = {"max_side": settings.max_cutout_side, "max_volume": settings.max_cutout_volume,
                       "max_bytes": settings.jobs_max_result_bytes}
        self._inbox: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jobs-io")
        self._lock_fd: int | None = None
        self._client: Any = None
        self._cluster = contextlib.ExitStack()
        self._queue: dict[str, Queued] = {}
        self._running: dict[str, _Running] = {}
        self._finishing: set[str] = set()
        self._inflight: dict[str, tuple[str, BatchTask, Any]] = {}
        self._served: dict[str, int] = {}
        self._owners = RoundRobin()
        self._jobs_of: dict[str, RoundRobin] = {}
        self._seq = 0
        #: in every task key: a new runner (a restart) never meets an earlier runner's keys on a scheduler
        self._token = uuid.uuid4().hex[:8]
        self._next_scan = 0.0
        self._next_reap = 0.0
        #: set once this process holds the runner lock
        self.elected = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runner's thread (idempotent): it takes the runner lock, then runs jobs."""
        with self._start_lock:
            if self._started or self._stopping.is_set():
                return
            self._started = True
            self._thread = threading.Thread(target=self._run, name="jobs-runner", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop: unfinished jobs keep their phase and a manifest of what they finished."""
        self._stopping.set()
        self._inbox.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
        self._io.shutdown(wait=True, cancel_futures=False)

    def wake(self) -> None:
        """Look at the store now (a job was created, started, aborted or deleted)."""
        self._inbox.put(("scan",))

    def stats(self) -> dict[str, int]:
        """Counters for /health and tests."""
        return {"queued": len(self._queue), "running": len(self._running), "tasks_in_flight": len(self._inflight)}

    def _acquire(self) -> bool:
        self.store.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.store.root / ".runner.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self.elected.set()
        return True

    def _run(self) -> None:
        """The runner thread (waits only in this function, so an idle runner is recognisably idle)."""
        try:
            while not self._acquire():
                if self._stopping.wait(1.0):
                    return
            log.info("job runner started (jobs under %s)", self.store.root)
            while not self._stopping.is_set():
                try:
                    message = self._inbox.get(timeout=max(0.05, self._next_scan - time.monotonic()))
                except queue.Empty:
                    message = None
                try:
                    self._step(message)
                except Exception:  # a disk or cluster fault: logged; the runner goes on after a pause
                    log.exception("job runner: a step failed")
                    if self._stopping.wait(1.0):
                        break
        finally:
            self._shutdown()

    # -- one turn ----------------------------------------------------------------------------------
    def _step(self, first: tuple | None) -> None:
        messages = [] if first is None else [first]
        while True:
            try:
                messages.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        done: list[str] = []
        for message in messages:
            kind = message[0]
            if kind == "stop":
                return
            if kind == "done":
                done.append(message[1])
            elif kind == "planned":
                self._planned(*message[1:])
            elif kind == "finalized":
                self._finalized(*message[1:])
            elif kind == "scan":
                self._next_scan = 0.0
        if done:
            self._collect(done)
        now = time.monotonic()
        if now >= self._next_scan:
            self._scan()
            self._next_scan = time.monotonic() + SCAN_S
        if now >= self._next_reap:
            self._reap()
            self._next_reap = now + self.settings.jobs_reap_s
        self._enforce_limits()
        self._admit()
        self._fill()
        self._checkpoint()

    # -- what to run -------------------------------------------------------------------------------
    def _scan(self) -> None:
        records = {r.job_id: r for r in self.store.list()}
        for job_id, state in list(self._running.items()):
            record = records.get(job_id)
            if record is None:
                self._drop(state)  # destroyed: nothing of it is kept
            elif record.abort_requested:
                self._finish(state, Phase.ABORTED, "the job was aborted on request")
        for job_id, record in records.items():
            if record.phase in (Phase.QUEUED, Phase.EXECUTING) and not record.abort_requested:
                if job_id not in self._running and job_id not in self._queue and job_id not in self._finishing:
                    self._queue[job_id] = Queued(job_id, record.owner, record.queued or record.created)
            elif record.phase == Phase.EXECUTING and record.abort_requested and job_id not in self._running \
                    and job_id not in self._finishing:
                self._finish_idle(record, Phase.ABORTED, "the job was aborted on request")
        for job_id in list(self._queue):
            record = records.get(job_id)
            if record is None or record.phase not in (Phase.QUEUED, Phase.EXECUTING):
                del self._queue[job_id]

    def _admit(self) -> None:
        while self._queue and len(self._running) < self.settings.jobs_max_running:
            running = Counter(state.owner for state in self._running.values())
            chosen = next_admission(self._queue.values(), running, self._served)
            del self._queue[chosen.job_id]
            try:
                record = self.store.update(chosen.job_id, _start)
            except (_NotRunnable, NotFoundError):
                continue
            self._seq += 1
            self._served[chosen.owner] = self._seq
            state = _Running(chosen.job_id, chosen.owner, record, admitted=time.monotonic())
            self._running[chosen.job_id] = state
            self._owners.add(chosen.owner)
            self._jobs_of.setdefault(chosen.owner, RoundRobin()).add(chosen.job_id)
            self._io.submit(self._plan, chosen.job_id, record)

    def _plan(self, job_id: str, record: JobRecord) -> None:
        """On a helper thread: the job's plan, or the exception planning raised."""
        try:
            params = record.params
            plan = plan_batch(self.store.path(job_id, JobStore.TARGETS), size=(params["x"], params["y"]),
                              units=params["units"], sectors=params.get("sectors") or None,
                              out_dir=self.store.path(job_id, JobStore.OUT), catalog=self.catalog(),
                              product=params["product"], s3=self.s3, limits=self.limits,
                              time_min=params.get("time_min"), time_max=params.get("time_max"),
                              frame_bin=params.get("frame_bin", 1))
        except Exception as exc:  # noqa: BLE001 - the job ends in ERROR with the message
            self._inbox.put(("planned", job_id, None, exc))
            return
        self._inbox.put(("planned", job_id, plan, None))

    def _planned(self, job_id: str, plan: BatchPlan | None, error: BaseException | None) -> None:
        state = self._running.get(job_id)
        if state is None:
            return
        if plan is None:
            if not isinstance(error, NotFoundError | ValueError) and not hasattr(error, "field"):
                log.error("job %s: planning failed", job_id, exc_info=error)
            self._finish(state, Phase.ERROR, f"the job could not be planned: {describe_error(error)}")
            return
        state.plan = plan
        state.pending = deque(plan.tasks)
        for row in plan.rows:
            if row.status:
                self._count_row(state, row.status)
            else:
                state.remaining[row.index] += 1
        state.counts["bytes"] = sum(results.result_files(plan.rows).values())
        targets = {row.index for row in plan.rows}
        state.counts["targets_done"] = len(targets - set(state.remaining))
        state.dirty = True
        log.info("job %s: %d targets, %d rows, %d cutouts to make", job_id, plan.targets, len(plan.rows),
                 len(plan.tasks))
        if not state.pending:
            self._finish(state, Phase.COMPLETED, None)

    def _count_row(self, state: _Running, status: str) -> None:
        state.counts["rows_done"] += 1
        state.counts[status] += 1

    # -- Dask ----------------------------------------------------------------------------------------
    def _ensure_client(self) -> Any:
        if self._client is None:
            s = self.settings
            self._client = self._cluster.enter_context(dask_client(
                s.dask_scheduler, workers=s.jobs_dask_workers, memory_limit=s.jobs_dask_memory_limit))
            log.info("jobs run on the Dask scheduler %s", getattr(self._client.scheduler, "address", "?"))
        return self._client

    def _fill(self) -> None:
        free = self.settings.jobs_tasks_in_flight - len(self._inflight)

        def has_work(job_id: Any) -> bool:
            state = self._running.get(job_id)
            return state is not None and bool(state.pending)

        def owner_ready(owner: Any) -> bool:
            jobs = self._jobs_of.get(owner)
            return jobs is not None and jobs.any(has_work)

        if free <= 0 or not self._owners.any(owner_ready):
            return
        try:
            client = self._ensure_client()
        except Exception as exc:  # noqa: BLE001 - every job waiting for the cluster fails with the reason
            log.error("cannot start or reach the Dask cluster: %s", exc)
            for state in list(self._running.values()):
                if state.pending:
                    self._finish(state, Phase.ERROR, f"the Dask cluster is not available: {describe_error(exc)}")
            return
        while free > 0:
            owner = self._owners.next(owner_ready)
            if owner is None:
                return
            job_id = self._jobs_of[owner].next(has_work)
            state = self._running[job_id]
            n = min(self.settings.jobs_quantum, free, len(state.pending))
            self._submit(client, state, [state.pending.popleft() for _ in range(n)])
            free -= n

    def _submit(self, client: Any, state: _Running, tasks: list[BatchTask]) -> None:
        keys = []
        for _ in tasks:
            self._seq += 1
            keys.append(f"job-{state.job_id}-{self._token}-{self._seq}")
        futures = client.map(cut_target, *zip(*(t.args for t in tasks)), key=keys, pure=False)
        for key, task, future in zip(keys, tasks, futures):
            self._inflight[key] = (state.job_id, task, future)
            state.inflight.add(key)
        for future in futures:
            future.add_done_callback(self._done)

    def _done(self, future: Any) -> None:
        """A future's done callback (on the Dask client's thread): hand it to the runner."""
        self._inbox.put(("done", future.key))

    def _collect(self, keys: list[str]) -> None:
        finished: list[tuple[_Running, BatchTask, Any]] = []
        failed: list[tuple[_Running, BatchTask, Any]] = []
        for key in keys:
            entry = self._inflight.pop(key, None)
            if entry is None:
                continue
            job_id, task, future = entry
            state = self._running.get(job_id)
            if state is None:
                continue
            state.inflight.discard(key)
            (finished if future.status == "finished" else failed).append((state, task, future))
        values: list[Any] = []
        if finished:
            try:
                values = self._client.gather([f for _, _, f in finished])
            except Exception:  # noqa: BLE001 - one at a time then, each with its own outcome
                values = [_outcome(f) for _, _, f in finished]
        touched: dict[str, _Running] = {}
        for (state, task, future), value in [*zip(finished, values), *((x, _outcome(x[2])) for x in failed)]:
            status = record_result(task, value, state.plan.out_dir)
            for row in task.rows:
                self._count_row(state, status)
                state.remaining[row.index] -= 1
                if state.remaining[row.index] == 0:
                    del state.remaining[row.index]
                    state.counts["targets_done"] += 1
            if status in ("ok", "skipped"):
                state.counts["bytes"] += int(task.rows[0].bytes or 0)
            state.dirty = True
            touched[state.job_id] = state
        for state in touched.values():
            if state.counts["bytes"] > self.settings.jobs_max_result_bytes:
                self._finish(state, Phase.ABORTED, f"the job's results passed {self.settings.jobs_max_result_bytes} "
                                                   "bytes, the most a job may produce (jobs_max_result_bytes)")
            elif not state.pending and not state.inflight:
                self._finish(state, Phase.COMPLETED, None)

    # -- limits, progress, the end ---------------------------------------------------------------------
    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for state in list(self._running.values()):
            limit = state.record.execution_duration
            if limit and state.record.elapsed_s + now - state.admitted > limit:
                self._finish(state, Phase.ABORTED, f"the job ran longer than its executionDuration of {limit} s")

    def _checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        for state in list(self._running.values()):
            if state.plan is None or not state.dirty:
                continue
            if not force and now - state.saved < self.settings.jobs_checkpoint_s:
                continue
            write_manifest(state.plan.manifest, [r for r in state.plan.rows if r.status])
            self._save_progress(state)

    def _save_progress(self, state: _Running) -> None:
        progress = state.progress()
        elapsed = state.record.elapsed_s + time.monotonic() - state.admitted

        def save(record: JobRecord) -> None:
            record.progress = progress
            record.elapsed_s = elapsed

        try:
            self.store.update(state.job_id, save)
        except NotFoundError:
            self._drop(state)
            return
        state.dirty = False
        state.saved = time.monotonic()

    def _release(self, state: _Running) -> None:
        """Forget a job: cancel its tasks still on the cluster, free its turn."""
        self._running.pop(state.job_id, None)
        futures = []
        for key in state.inflight:
            entry = self._inflight.pop(key, None)
            if entry is not None:
                futures.append(entry[2])
        state.inflight.clear()
        state.pending.clear()
        if futures and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.cancel(futures)
        jobs = self._jobs_of.get(state.owner)
        if jobs is not None:
            jobs.remove(state.job_id)
            if not len(jobs):
                del self._jobs_of[state.owner]
                self._owners.remove(state.owner)

    def _drop(self, state: _Running) -> None:
        log.info("job %s was destroyed while running", state.job_id)
        self._release(state)

    def _finish(self, state: _Running, phase: Phase, error: str | None) -> None:
        """End a running job: cancel what is left, write its manifest, then (on a helper thread)
        its served manifest and results list, and only then its phase."""
        self._release(state)
        ended = time.time()
        rows = state.plan.rows if state.plan is not None else []
        if phase != Phase.COMPLETED:
            why = f"not run: {error}" if error else "not run"
            for row in rows:
                if not row.status:
                    row.status, row.error = "error", why
                    self._count_row(state, "error")
        if state.plan is not None:
            try:
                write_manifest(state.plan.manifest, rows)
            except Exception:
                log.exception("job %s: cannot write the manifest", state.job_id)
        progress = state.progress()
        elapsed = state.record.elapsed_s + time.monotonic() - state.admitted
        self._finishing.add(state.job_id)
        self._io.submit(self._write_results, state.job_id, rows, phase, error, ended, progress, elapsed)

    def _finish_idle(self, record: JobRecord, phase: Phase, error: str) -> None:
        """End a job that is not running here (an abort request for a job waiting to resume): its
        results are what its last manifest says it finished."""
        self._queue.pop(record.job_id, None)
        self._finishing.add(record.job_id)
        rows = results.read_manifest(self.store.path(record.job_id, JobStore.OUT) / "manifest.csv")
        self._io.submit(self._write_results, record.job_id, rows, phase, error, time.time(), record.progress,
                        record.elapsed_s)

    def _write_results(self, job_id: str, rows: list, phase: Phase, error: str | None, ended: float,
                       progress: dict, elapsed: float) -> None:
        """On a helper thread: the served manifest and results list, then the final phase."""
        try:
            results.finalize(self.store.job_dir(job_id), rows, self.scrub)
        except Exception as exc:
            if self.store.get(job_id) is not None:
                log.exception("job %s: cannot write its results", job_id)
                phase, error = Phase.ERROR, f"the results could not be written: {describe_error(exc)}"

        def end(record: JobRecord) -> None:
            if record.phase in FINAL:
                return
            record.phase, record.ended, record.progress, record.elapsed_s = phase, ended, progress, elapsed
            record.error = self.scrub(error) if error else None

        with contextlib.suppress(NotFoundError):
            self.store.update(job_id, end)
        self._inbox.put(("finalized", job_id))

    def _finalized(self, job_id: str) -> None:
        self._finishing.discard(job_id)

    # -- expiry and shutdown -------------------------------------------------------------------------
    def _reap(self) -> None:
        now = time.time()
        for record in self.store.list():
            if record.destruction <= now:
                state = self._running.get(record.job_id)
                if state is not None:
                    self._release(state)
                self._queue.pop(record.job_id, None)
                log.info("job %s: destroyed at its destruction time", record.job_id)
                self._io.submit(self.store.delete, record.job_id)
        self._io.submit(self.store.remove_orphans, max(ORPHAN_GRACE_S, 2 * self.settings.jobs_reap_s))

    def _shutdown(self) -> None:
        """Leave every unfinished job resumable: cancel its tasks, save what it finished."""
        for state in list(self._running.values()):
            try:
                if state.plan is not None:
                    write_manifest(state.plan.manifest, [r for r in state.plan.rows if r.status])
                    self._save_progress(state)
            except Exception:
                log.exception("job %s: cannot save its progress", state.job_id)
            self._release(state)
        with contextlib.suppress(Exception):
            self._cluster.close()
        self._client = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _start(record: JobRecord) -> None:
    """Admit a job: QUEUED becomes EXECUTING (a job resumed after a restart stays EXECUTING)."""
    if record.phase not in (Phase.QUEUED, Phase.EXECUTING) or record.abort_requested:
        raise _NotRunnable
    if record.phase == Phase.QUEUED:
        record.phase, record.started = Phase.EXECUTING, time.time()


class _NotRunnable(Exception):
    """The job was aborted or finished between being queued and being admitted."""


def _outcome(future: Any) -> Any:
    """A future's result, or the exception it ended with (a dead worker, a cancellation)."""
    try:
        return future.result()
    except BaseException as exc:  # noqa: BLE001 - recorded as the row's error
        return exc
