"""The Dask cluster of a batch: a client to a running scheduler or to a new LocalCluster.

Shared by :mod:`core.batch.cutouts`, :mod:`core.batch.cube_builds` and the service's job runner.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.errors import InvalidInputError, UnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["CONNECT_TIMEOUT", "DEFAULT_MEMORY_LIMIT", "WORKER_SATURATION", "check_cluster_options", "dask_client"]

#: memory each LocalCluster worker may use (Dask's nanny pauses a worker at 80%, restarts it at 95%)
DEFAULT_MEMORY_LIMIT = "2GiB"
#: tasks a LocalCluster's scheduler hands each worker thread ahead (Dask's default, 1.1, makes
#: every millisecond-long cutout wait for a scheduler round trip: 1000 trivial tasks on 1 worker
#: took 3.0 s with it, 0.8 s with 16, here); a running cluster keeps its own setting
WORKER_SATURATION = 16.0
#: how long reaching a running scheduler may take (Dask retries the connection until then)
CONNECT_TIMEOUT = "20s"


def check_cluster_options(scheduler: Any, workers: Any, memory_limit: Any) -> tuple[int | None, Any]:
    """Validated ``(workers, memory_limit)`` for :func:`dask_client` (``memory_limit`` is only
    checked when a LocalCluster will be made, ``scheduler`` being None).

    Raises
    ------
    InvalidInputError
        ``workers`` is not a positive whole number, or ``memory_limit`` is not a size
        (``"2GiB"``, a number of bytes, ``"auto"``).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive whole number, got {workers!r}", field="workers")
    if scheduler is not None or memory_limit == "auto":
        return workers, memory_limit
    from dask.utils import parse_bytes

    try:
        nbytes = parse_bytes(memory_limit) if isinstance(memory_limit, str) else float(memory_limit)
    except (TypeError, ValueError):
        nbytes = float("nan")
    if not (math.isfinite(nbytes) and nbytes > 0):
        raise InvalidInputError(f"memory_limit must be a size such as '2GiB' or a number of bytes, "
                                f"got {memory_limit!r}", field="memory_limit")
    return workers, memory_limit


@contextmanager
def dask_client(scheduler: str | Client | None = None, *, workers: int | None = None,
                memory_limit: str | float = DEFAULT_MEMORY_LIMIT) -> Iterator[Client]:
    """A Dask client: to the running scheduler at ``scheduler``, or to a new LocalCluster.

    Parameters
    ----------
    scheduler : str or distributed.Client, optional
        A scheduler address (``tcp://host:8786``) or a client to use as is (not closed here).
        ``workers`` and ``memory_limit`` are the running cluster's business then.
    workers : int, optional
        Worker processes of the LocalCluster, one thread each (default: the CPU count).
    memory_limit : str or number
        Memory per LocalCluster worker (``"2GiB"``, bytes, or ``"auto"``: system memory / workers).

    Raises
    ------
    UnavailableError
        The scheduler cannot be reached.
    InvalidInputError
        Bad ``workers`` or ``memory_limit``.
    """
    import dask
    from distributed import Client, LocalCluster

    workers, memory_limit = check_cluster_options(scheduler, workers, memory_limit)
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise UnavailableError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                   field="scheduler") from None
        try:
            yield client
        finally:
            client.close()
        return
    # The scheduler runs in this process and logs every worker's arrival and departure at INFO;
    # under a CLI's INFO logging that buries the batch's own lines, so it is held at WARNING here.
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    dask_log.setLevel(max(level, logging.WARNING))
    try:
        # read once, when the scheduler starts
        with dask.config.set({"distributed.scheduler.worker-saturation": WORKER_SATURATION}):
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, memory_limit=memory_limit, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.WARNING,
                                   # no dashboard; the scheduler's small HTTP server (health,
                                   # metrics) on a free loopback port rather than 8787 (often taken)
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
    finally:
        dask_log.setLevel(level)
