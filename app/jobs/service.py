"""What the jobs router calls: create, change, list, wait for and destroy jobs, within the limits.

:class:`JobService` holds the store and the runner. Its methods other than :meth:`JobService.wait`
block (disk, parsing) and are run on the worker pool by the router; :meth:`JobService.wait` is a
coroutine that waits on the event loop, never on a thread.

Limits (``app.settings``): ``jobs_max_targets`` targets and about ``jobs_max_result_bytes`` bytes
of results per job (413, estimated from the catalog when the table is given); at most
``jobs_max_active_per_client`` unfinished jobs per client address and ``jobs_max_active`` in
all, ``jobs_max_stored_per_client`` kept jobs per address and ``jobs_max_stored`` in all (429
with ``Retry-After``). Each
error message names its setting. A job is destroyed ``jobs_retention_s`` after its creation
unless its destruction time is set earlier; it may run for ``jobs_max_execution_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.jobs import results
from app.jobs.params import JobRequest, parse_create, parse_int, parse_timestamp
from app.jobs.runner import JobRunner
from app.jobs.store import ACTIVE, FINAL, JobRecord, JobStore, Phase
from core.errors import InvalidInputError, NotFoundError, QuotaError, TooLargeError
from core.storage.atomic import write_bytes_atomic

__all__ = ["JobService"]

log = logging.getLogger("app.jobs")

#: seconds a client is told to wait when too many of its jobs are unfinished
RETRY_ACTIVE_S = 10
#: a blocking poll looks at the disk at least this often (changes made by another process)
POLL_S = 0.5


class JobService:
    """The service's async jobs (see the module docstring).

    Parameters
    ----------
    settings : app.settings.Settings
    catalog : callable
        Returns the current catalog snapshot.
    s3 : core.storage.s3.S3Config, optional
    scrub : callable
        Removes the server's folders from messages.
    """

    def __init__(self, settings: Any, catalog: Callable[[], Any], s3: Any = None,
                 scrub: Callable[[str], str] = lambda text: text) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = JobStore(settings.work_dir / "jobs")
        self.runner = JobRunner(self.store, settings, catalog, s3, scrub)
        self._create_lock = threading.Lock()
        self._results_cache: dict[str, tuple[float, dict[str, int]]] = {}

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runner when jobs exist (left by a previous run); otherwise the first job
        created starts it (a service nobody sends jobs to runs no runner thread)."""
        if self.store.has_jobs():
            self.runner.start()

    def stop(self) -> None:
        self.runner.stop()

    # -- limits ------------------------------------------------------------------------------------
    def _check_quotas(self, owner: str) -> None:
        s = self.settings
        records = self.store.list()
        mine = [r for r in records if r.owner == owner]
        active_mine = sum(1 for r in mine if r.phase in ACTIVE)
        if active_mine >= s.jobs_max_active_per_client:
            raise QuotaError(f"this client address has {active_mine} jobs not finished yet, the most allowed "
                             f"(jobs_max_active_per_client = {s.jobs_max_active_per_client}): wait for one to "
                             "finish, or abort or delete one", retry_after_s=RETRY_ACTIVE_S)
        active = sum(1 for r in records if r.phase in ACTIVE)
        if active >= s.jobs_max_active:
            raise QuotaError(f"the service has {active} jobs not finished yet, the most it takes "
                             f"(jobs_max_active = {s.jobs_max_active})", retry_after_s=RETRY_ACTIVE_S)
        if len(mine) >= s.jobs_max_stored_per_client:
            wait = min(r.destruction for r in mine) - time.time()
            raise QuotaError(f"this client address has {len(mine)} jobs kept, the most allowed "
                             f"(jobs_max_stored_per_client = {s.jobs_max_stored_per_client}): delete finished "
                             "ones", retry_after_s=int(max(1.0, wait)))
        if len(records) >= s.jobs_max_stored:
            wait = min(r.destruction for r in records) - time.time()
            raise QuotaError(f"the service keeps {len(records)} jobs, the most it keeps "
                             f"(jobs_max_stored = {s.jobs_max_stored})", retry_after_s=int(max(1.0, wait)))

    def _estimate(self, request: JobRequest) -> dict[str, int]:
        if request.table is None:
            return {}
        estimate = results.estimate_results(request.table, request.params, self.catalog())
        limit = self.settings.jobs_max_result_bytes
        if estimate["bytes"] > limit:
            raise TooLargeError(f"the job would make {estimate['pairs']} cutouts of about {estimate['bytes']} bytes "
                                f"in all, more than {limit}, the most a job may produce (jobs_max_result_bytes): "
                                "split the table, or ask for smaller cutouts", field="targets")
        return estimate

    # -- create and change ---------------------------------------------------------------------------
    def create(self, owner: str, items: Iterable[tuple[str, Any]]) -> JobRecord:
        """Create a job from a form's ``(name, value)`` items (uploads as :class:`app.jobs.params.Upload`)."""
        s = self.settings
        self._check_quotas(owner)
        request = parse_create(items, max_targets=s.jobs_max_targets, max_side=s.max_cutout_side)
        if request.run and request.table is None:
            raise InvalidInputError("PHASE=RUN needs targets: give a targets table or POS values", field="targets")
        estimate = self._estimate(request)
        now = time.time()
        record = JobRecord(
            job_id=self.store.new_id(), owner=owner, created=now, destruction=now + s.jobs_retention_s,
            execution_duration=s.jobs_max_execution_s, run_id=request.run_id, params=_params(request),
            estimate=estimate, progress={"targets": request.targets},
        )
        if request.run:
            record.phase, record.queued = Phase.QUEUED, now
        with self._create_lock:  # the check again, atomically with the creation (this process)
            self._check_quotas(owner)
            self.store.create(record, request.table if request.table is not None else b"ra,dec\n")
        self.runner.start()  # it also destroys the job when its time comes
        if request.run:
            self.runner.wake()
        return record

    def set_parameters(self, job_id: str, items: Iterable[tuple[str, Any]]) -> JobRecord:
        """Change a PENDING job's parameters (the creation form's, without ``PHASE``)."""
        record = self._pending(job_id, "parameters")
        s = self.settings
        request = parse_create(items, max_targets=s.jobs_max_targets, max_side=s.max_cutout_side,
                               current=record.params, allow_phase=False)
        table = request.table
        if table is None and record.params.get("source"):  # new sizes over the table already given
            table = self.store.path(job_id, JobStore.TARGETS).read_bytes()
        estimate = self._estimate(JobRequest(params=request.params, table=table)) if table is not None else {}

        def change(current: JobRecord) -> None:
            if current.phase != Phase.PENDING:
                raise InvalidInputError(f"the job is {current.phase}: parameters change only while it is PENDING",
                                        field="parameters")
            if request.table is not None:
                write_bytes_atomic(request.table, self.store.path(job_id, JobStore.TARGETS), field="targets")
                current.params.update(source=request.source, targets=request.targets, upload=request.upload_name)
                current.progress = {"targets": request.targets}
            current.params.update(request.params)
            current.estimate = estimate
            if request.run_id is not None:
                current.run_id = request.run_id

        return self.store.update(job_id, change)

    def _pending(self, job_id: str, what: str) -> JobRecord:
        record = self.store.require(job_id)
        if record.phase != Phase.PENDING:
            raise InvalidInputError(f"the job is {record.phase}: its {what} change only while it is PENDING", field=what)
        return record

    def set_phase(self, job_id: str, value: str) -> JobRecord:
        """``PHASE=RUN`` (a PENDING job is queued; no change once it runs) or ``PHASE=ABORT``
        (a job not finished is aborted; results made so far are kept)."""
        now = time.time()
        if value == "RUN":
            def run(record: JobRecord) -> None:
                if record.phase in FINAL:
                    raise InvalidInputError(f"the job is {record.phase}: it cannot run again", field="PHASE")
                if record.phase == Phase.PENDING:
                    if not record.params.get("source"):
                        raise InvalidInputError("the job has no targets yet: POST a targets table or POS values "
                                                "to its parameters first", field="targets")
                    record.phase, record.queued = Phase.QUEUED, now

            record = self.store.update(job_id, run)
            self.runner.start()
        elif value == "ABORT":
            def abort(record: JobRecord) -> None:
                if record.phase in (Phase.PENDING, Phase.QUEUED):
                    record.phase, record.ended, record.error = Phase.ABORTED, now, "the job was aborted on request"
                elif record.phase == Phase.EXECUTING:
                    record.abort_requested = True

            record = self.store.update(job_id, abort)
        else:
            raise InvalidInputError(f"PHASE must be RUN or ABORT, got {value[:20]!r}", field="PHASE")
        self.runner.wake()
        return record

    def set_destruction(self, job_id: str, value: str) -> JobRecord:
        """A new destruction time, kept within [now, creation + ``jobs_retention_s``]."""
        when = parse_timestamp("DESTRUCTION", value)

        def change(record: JobRecord) -> None:
            record.destruction = min(max(when, time.time()), record.created + self.settings.jobs_retention_s)

        record = self.store.update(job_id, change)
        self.runner.wake()
        return record

    def set_execution_duration(self, job_id: str, value: str) -> JobRecord:
        """A new executionDuration (seconds; 0, unlimited, and longer values become
        ``jobs_max_execution_s``), while the job has not started."""
        limit = self.settings.jobs_max_execution_s
        seconds = parse_int("EXECUTIONDURATION", value, low=0, high=10**12)
        seconds = limit if seconds == 0 else min(seconds, limit)

        def change(record: JobRecord) -> None:
            if record.phase not in (Phase.PENDING, Phase.QUEUED):
                raise InvalidInputError(f"the job is {record.phase}: its executionDuration changes only before it "
                                        "runs", field="EXECUTIONDURATION")
            record.execution_duration = seconds

        return self.store.update(job_id, change)

    def delete(self, job_id: str) -> None:
        """Destroy a job (its execution is aborted, its results removed)."""
        if not self.store.delete(job_id):
            raise NotFoundError(f"no job {job_id[:80]!r}", field="job_id")
        self.runner.wake()

    # -- read ----------------------------------------------------------------------------------------
    def list(self, owner: str, phases: set[str] | None, after: float | None, last: int | None) -> list[JobRecord]:
        """The owner's jobs, most recently created first (UWS filters: PHASE, AFTER, LAST)."""
        records = [r for r in self.store.list() if r.owner == owner]
        if phases:
            records = [r for r in records if r.phase in phases]
        if after is not None:
            records = [r for r in records if r.created > after]
        records.sort(key=lambda r: (r.created, r.job_id), reverse=True)
        return records if last is None else records[:last]

    def result_files(self, job_id: str) -> dict[str, int]:
        """``{path under out/: bytes}`` of the finished job's target pixel files (empty before)."""
        path = self.store.path(job_id, JobStore.RESULTS)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return {}
        hit = self._results_cache.get(job_id)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            files = {str(k): int(v) for k, v in json.loads(path.read_bytes()).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # damaged: no results, not a 500
            log.error("job %s: unreadable results list (%s)", job_id, exc)
            return {}
        if len(self._results_cache) > 64:
            self._results_cache.clear()
        self._results_cache[job_id] = (mtime, files)
        return files

    def result_path(self, job_id: str, relative: str) -> str:
        """The file of one result (only files the results list names are served)."""
        self.store.require(job_id)
        if relative not in self.result_files(job_id):
            raise NotFoundError(f"job {job_id[:80]} has no result {relative[:120]!r}", field="result")
        return str(self.store.path(job_id, JobStore.OUT) / relative)

    def zip_answer(self, job_id: str) -> Any:
        """The whole result as one zip (see :func:`app.jobs.results.zip_answer`)."""
        self.store.require(job_id)
        if not self.store.path(job_id, JobStore.MANIFEST).exists():
            raise NotFoundError(f"job {job_id[:80]} has no results yet", field="result")
        return results.zip_answer(self.store.job_dir(job_id), job_id, self.result_files(job_id))

    async def wait(self, job_id: str, seconds: float | None, phase: str | None) -> JobRecord:
        """UWS blocking: the job once its phase changes, after ``seconds`` at most; at once when
        not asked to wait, when the job is in no active phase, or not in ``phase`` when given."""
        with self.store.changes.subscribe(job_id) as changed:
            record = self.store.require(job_id)
            if not seconds or record.phase not in ACTIVE or (phase is not None and record.phase != phase):
                return record
            start = record.phase
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while (remaining := deadline - loop.time()) > 0:
                try:
                    await asyncio.wait_for(changed.wait(), timeout=min(remaining, POLL_S))
                except TimeoutError:
                    pass
                changed.clear()
                current = self.store.get(job_id)
                if current is None:
                    raise NotFoundError(f"job {job_id[:80]} was destroyed", field="job_id")
                record = current
                if record.phase != start:
                    break
            return record


def _params(request: JobRequest) -> dict[str, Any]:
    return {**request.params, "source": request.source, "targets": request.targets, "upload": request.upload_name}
