"""Batch cutouts on Dask distributed: many targets, every hosted cube that contains each one.

:func:`run_batch` reads a target table (a CSV with columns ``ra,dec`` and optional ``name`` and
``sector``, or rows given in Python), asks a cube catalog which cubes contain each target, and
runs one Dask task per (target, cube) on a :class:`distributed.LocalCluster` (``workers``
processes of one thread each, ``memory_limit`` per worker) or on a running cluster
(``scheduler`` address). Each task opens its cube itself through
``CutoutFactory().cube_cut(uri, ...)`` (local paths and ``s3://`` URIs alike) and writes the
target pixel file atomically to ``{out_dir}/{name or ra_dec}/{legacy TPF name}``.

The catalog (:class:`core.catalog.snapshot.Catalog`, e.g. from :func:`core.catalog.snapshot.open_catalog`) is used
on the client only, to plan the tasks; the tasks receive plain values: URI, position, size, output
directory, S3 settings as a dict.

Runs are resumable. A finished output is recognised by its name and its size: the previous
run's manifest records both (those pairs are skipped without a task), and every task first
computes the exact name and size of the file it is about to write (a TPF's size follows from the
cube and the cutout's shape) and skips the cut when that file is already there whole. Writes are
atomic (temporary name, then rename), so a partial file never carries a final name.

The manifest (``out_dir/manifest.csv`` by default) has one row per (target, cube): index, name,
ra, dec, sector, camera, ccd, cube, size, status (``ok`` | ``skipped`` | ``error``), file (relative
to ``out_dir``), bytes, error. A bad input row (non-numeric or out-of-range position, a missing
value) and a target on no cube become ``error`` rows; nothing in the table stops the run. The
manifest is rewritten atomically every ``checkpoint_s`` seconds while the run goes on (finished
rows only, so an interrupted run leaves a true one) and at the end; an interrupted run's final
manifest lists the pairs it did not reach as errors, which a rerun then cuts.

Progress is a tqdm bar when stderr is a terminal, log lines (logger ``core.batch.cutouts``) every
``log_every`` tasks and at the end otherwise, driven by :func:`distributed.as_completed`.

A time window and a frame binning (``time_min``, ``time_max``, ``frame_bin``;
:mod:`core.cubes.frames`) apply to every cut; a cube whose frames miss the window is an ``error``
row saying so. The window is part of what the manifest's ``size`` column records (so a rerun with
another window cuts again) and of the file names (:func:`core.tpf.cut.tpf_filename`).

Follows TESScut's batch habit of one TPF per (target, sector/camera/CCD) and its legacy file
names (:func:`core.tpf.cut.tpf_filename`); astrocut has no batch runner.

The pieces this module plans and runs with live beside it: the target table in
:mod:`core.batch.targets`, the manifest and the report in :mod:`core.batch.manifest`, the Dask
client in :mod:`core.batch.cluster`, the progress display in :mod:`core.batch.progress`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.batch.cluster import DEFAULT_MEMORY_LIMIT, check_cluster_options, dask_client
from core.batch.manifest import BatchReport, ManifestRow, write_manifest
from core.batch.progress import ProgressDisplay
from core.batch.targets import Target, describe_error, formula_text, read_targets, target_dir_name
from core.catalog.snapshot import Catalog
from core.cubes.frames import TimeWindow
from core.errors import CutoutError, InvalidInputError, NoDataError
from core.product import Product
from core.storage.atomic import remove_stale_temporaries
from core.storage.s3 import S3Config

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = [
    "TARGET_CONCURRENCY",
    "BatchPlan",
    "BatchTask",
    "cut_target",
    "cut_target_cubes",
    "cutout_size_arg",
    "plan_batch",
    "record_result",
    "run_batch",
    "task_result",
]

logger = logging.getLogger("core.batch.cutouts")

#: at most this many cutouts are submitted and not yet finished (bounds client and scheduler memory)
MAX_IN_FLIGHT = 2000
#: cubes of one target cut at once inside its task (an S3 cut mostly waits on its round trip)
TARGET_CONCURRENCY = 8
#: tasks given to the scheduler in one ``client.map``
SUBMIT_CHUNK = 500
_UNITS = ("px", "arcsec", "arcmin", "deg")


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------


def _size_values(size: Any, units: str) -> tuple[tuple[float, float], str]:
    """Validated ``((x, y), units)``: whole pixels >= 1, or positive angles (one value: square)."""
    if not isinstance(units, str) or units.lower() not in _UNITS:
        raise InvalidInputError(f"units must be one of {', '.join(_UNITS)}, got {units!r}", field="units")
    units = units.lower()
    values = [size] if isinstance(size, (int, float, str)) else list(size) if size is not None else []
    if len(values) not in (1, 2):
        raise InvalidInputError(f"size takes one or two numbers (x then y), got {size!r}", field="size")
    numbers = []
    for v in values:
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise InvalidInputError(f"size {v!r} is not a number", field="size") from None
        if not (math.isfinite(number) and number > 0):
            raise InvalidInputError(f"size must be positive, got {v!r}", field="size")
        if units == "px" and (number != int(number) or number < 1):
            raise InvalidInputError(f"a size in pixels must be a whole number >= 1, got {v!r}", field="size")
        numbers.append(int(number) if units == "px" else number)
    if len(numbers) == 1:
        numbers *= 2
    return (numbers[0], numbers[1]), units


def cutout_size_arg(size: Sequence[float], units: str) -> Any:
    """What ``cube_cut`` takes for a size ``(x, y)`` in ``units``: ``[nx, ny]`` for pixels, an
    angular ``Quantity`` pair otherwise (x first, as astrocut behaves)."""
    if units == "px":
        return [int(size[0]), int(size[1])]
    import astropy.units as u

    return [float(size[0]), float(size[1])] * {"arcsec": u.arcsec, "arcmin": u.arcmin, "deg": u.deg}[units]


def _size_text(size: Sequence[float], units: str, window: TimeWindow | None = None) -> str:
    text = f"{size[0]:g}x{size[1]:g} {units}"
    if window is None or window.is_default:
        return text
    lo = "" if window.time_min is None else f"{window.time_min!r}"
    hi = "" if window.time_max is None else f"{window.time_max!r}"
    return f"{text} BTJD {lo}..{hi} bin {window.frame_bin}"


# --------------------------------------------------------------------------------------------
# the task (runs on a worker: plain arguments in, a plain dict out)
# --------------------------------------------------------------------------------------------


def _s3_config(s3: Mapping[str, Any] | S3Config | None) -> S3Config | None:
    if s3 is None or isinstance(s3, S3Config):
        return s3
    return S3Config(**dict(s3))


def _remove_stale_parts(path: str) -> None:
    """Remove the temporary files an earlier, killed attempt at ``path`` left beside it (named as
    :func:`core.storage.atomic.atomic_output` names them). Within a run one task writes each path,
    so any such file is stale, whichever process made it."""
    directory, name = os.path.split(path)
    remove_stale_temporaries(directory, f".{name}.", ".part", any_owner=True)


def cut_target(uri: str, ra: float, dec: float, size: Sequence[float], units: str, product: str,
               target_dir: str, s3: Mapping[str, Any] | S3Config | None = None,
               window: Sequence[Any] | None = None, limits: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cut one target out of one cube into ``target_dir`` (the Dask task of :func:`run_batch`).

    ``window`` is ``(time_min, time_max, frame_bin)`` (:class:`core.cubes.frames.TimeWindow`), None
    for every frame. ``limits`` (``max_side``, ``max_volume``, ``max_bytes``: :class:`core.cutout_size.Limits`'s
    fields) bound the window; a window beyond them is an ``error`` result naming the limit.
    Default: the engine's own (:meth:`core.cutout_size.Limits.engine_default`).

    The exact output name and size are computed first (the window :func:`core.tpf.cut.locate`
    places, :func:`core.tpf.cut.tpf_filename`, the byte size of that window's TPF for this cube); a
    file already there with that size is kept (``"skipped"``). Otherwise
    ``CutoutFactory().cube_cut`` writes it (temporary name, then rename), after removing what a
    killed earlier attempt left of its temporary files.

    Returns
    -------
    dict
        ``{"status": "ok" | "skipped", "path": str, "bytes": int}`` or
        ``{"status": "error", "error": str}``; failures never raise, so one bad cube cannot end
        the batch.
    """
    from core.cubes.cache import open_cube
    from core.cutout_size import Limits
    from core.tpf.cut import CutoutFactory, locate, tpf_filename, tpf_nbytes

    try:
        config = _s3_config(s3)
        bounds = Limits.engine_default() if limits is None else Limits(**dict(limits))
        cutout_size = cutout_size_arg(size, units)
        coordinates = f"{float(ra)!r} {float(dec)!r}"  # the exact floats: RA_OBJ/DEC_OBJ as given
        cube = open_cube(uri, s3=config)
        wanted = TimeWindow(*window) if window is not None else TimeWindow()
        frames = None if wanted.is_default else wanted.resolve(cube.time)
        win = locate(cube, coordinates, cutout_size, limits=bounds, frames=frames).window
        path = os.path.join(target_dir, tpf_filename(cube.uri, ra, dec, win.nx, win.ny, frames))
        # the TPF of a window is the cube's layout for that shape, byte for byte (core.tpf.cut)
        expected = tpf_nbytes(cube, win.nx, win.ny, frames)
        try:
            if os.stat(path).st_size == expected:
                return {"status": "skipped", "path": path, "bytes": expected}
        except FileNotFoundError:
            pass
        _remove_stale_parts(path)
        written = CutoutFactory(limits=bounds).cube_cut(uri, coordinates, cutout_size, product=product,
                                                        output_path=target_dir, s3=config,
                                                        time_min=wanted.time_min, time_max=wanted.time_max,
                                                        frame_bin=wanted.frame_bin)
        return {"status": "ok", "path": os.fspath(written), "bytes": os.path.getsize(written)}
    except Exception as exc:  # noqa: BLE001 - reported in the manifest, the batch goes on
        return {"status": "error", "error": describe_error(exc)}


def cut_target_cubes(calls: Sequence[Sequence[Any]], concurrency: int = TARGET_CONCURRENCY) -> list[dict[str, Any]]:
    """:func:`cut_target` of one target on each of its cubes (``calls``: their arguments), at most
    ``concurrency`` at once on threads (the Dask task of :func:`run_batch`: a target's sectors are
    cut together, as the service cuts a many-sector request); the results in order."""
    calls = [tuple(c) for c in calls]
    if len(calls) <= 1 or concurrency <= 1:
        return [cut_target(*c) for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(int(concurrency), len(calls)), thread_name_prefix="target") as pool:
        return list(pool.map(lambda c: cut_target(*c), calls))


def _by_target(tasks: Sequence[BatchTask]) -> list[list[BatchTask]]:
    """The tasks grouped by target (their output folder), each group in plan order."""
    groups: dict[str, list[BatchTask]] = {}
    for task in tasks:
        groups.setdefault(str(task.args[6]), []).append(task)
    return list(groups.values())


# --------------------------------------------------------------------------------------------
# a previous run's outputs
# --------------------------------------------------------------------------------------------


def _previous_outputs(path: str) -> dict[tuple, tuple[str, int]]:
    """Finished pairs of a previous manifest: (name, ra, dec, cube, size) -> (file, bytes)."""
    done: dict[tuple, tuple[str, int]] = {}
    if not os.path.isfile(path):
        return done
    with open(path, newline="", encoding="utf-8") as fh:
        try:
            for written in csv.DictReader(fh):
                row = {k: formula_text(v or "") for k, v in written.items() if k is not None}
                if row.get("status") not in ("ok", "skipped") or not row.get("file"):
                    continue
                try:
                    nbytes = int(row.get("bytes") or "")
                except ValueError:
                    continue
                key = (row.get("name", ""), row.get("ra", ""), row.get("dec", ""), row.get("cube", ""),
                       row.get("size", ""))
                done[key] = (row["file"], nbytes)
        except csv.Error as exc:
            logger.warning("ignoring the unreadable previous manifest %s (%s)", path, exc)
            return {}
    return done


def _whole_file(out_dir: str, relative: str, nbytes: int, target_dir: str, prefix: str) -> bool:
    """Whether a previous manifest's file is the one this pair names, and whole: in the target's
    folder, named ``{cube stem}_{ra}_{dec}_...`` (its window's shape follows), of ``nbytes``."""
    path = os.path.normpath(os.path.join(out_dir, relative))
    if os.path.dirname(path) != os.path.normpath(target_dir) or not os.path.basename(path).startswith(prefix):
        return False
    try:
        return os.stat(path).st_size == nbytes
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# the batch
# --------------------------------------------------------------------------------------------


@dataclass
class BatchTask:
    """One cutout to run, and the manifest rows waiting for it (duplicates share a task).

    ``args`` are :func:`cut_target`'s positional arguments (plain values, for a Dask task)."""

    args: tuple
    label: str
    rows: list[ManifestRow]


@dataclass
class BatchPlan:
    """What :func:`plan_batch` decided: every manifest row, and the tasks still to run.

    Attributes
    ----------
    rows : list of ManifestRow
        One per (target, cube), plus one per bad or uncovered target, in table order; rows done
        by a previous run (``skipped``) and error rows already have their status.
    tasks : list of BatchTask
        The cutouts still to make, each with the rows it finishes.
    targets : int
        Rows of the target table.
    bad : int
        Target rows that could not be read (each an error row).
    manifest : str
        Where the manifest goes (and where the previous run's was read).
    out_dir : str
        The output root (absolute).
    """

    rows: list[ManifestRow]
    tasks: list[BatchTask]
    targets: int
    bad: int
    manifest: str
    out_dir: str


def _plan(targets: list[Target], catalog: Catalog, size: tuple[float, float], units: str,
          sectors: set[int] | None, product: str, out_dir: str, s3: dict | None, previous: dict,
          limits: dict | None = None, window: TimeWindow | None = None
          ) -> tuple[list[ManifestRow], list[BatchTask]]:
    """Manifest rows for every (target, cube) and the tasks still to run."""
    from core.tpf.cut import tpf_filename

    rows: list[ManifestRow] = []
    tasks: dict[tuple, BatchTask] = {}
    size_text = _size_text(size, units, window)
    window_args = None if window is None or window.is_default else (window.time_min, window.time_max,
                                                                      window.frame_bin)
    for t in targets:
        if t.error:
            rows.append(ManifestRow(t.index, t.name, t.raw_ra, t.raw_dec, t.sector, size=size_text,
                                    status="error", error=t.error))
            continue
        ra_text, dec_text = repr(t.ra), repr(t.dec)
        wanted = sectors
        if t.sector is not None:
            wanted = {t.sector} if sectors is None else sectors & {t.sector}
        base = {"index": t.index, "name": t.name, "ra": ra_text, "dec": dec_text, "size": size_text}
        try:
            if wanted is not None and not wanted:
                raise NoDataError(f"the row's sector {t.sector} is not among the requested sectors "
                                  f"{sorted(sectors or ())}", field="sector")
            records = list(catalog.containing(t.ra, t.dec, 0.0, product=product,
                                              sectors=None if wanted is None else sorted(wanted)))
            if not records:
                raise NoDataError("no hosted cube contains the position", field="coordinates")
            if window is not None and not window.is_default:
                records = [r for r in records if window.overlaps(float(r.tstart), float(r.tstop))]
                if not records:
                    raise NoDataError("no hosted cube containing the position has frames in the time window",
                                      field="time_min")
        except CutoutError as exc:
            rows.append(ManifestRow(**base, sector=t.sector, status="error", error=describe_error(exc)))
            continue
        tdir = os.path.join(out_dir, target_dir_name(t.name, t.ra, t.dec))
        for rec in sorted(records, key=lambda r: (int(r.sector), int(r.camera), int(r.ccd), str(r.uri))):
            row = ManifestRow(**base, sector=int(rec.sector), camera=int(rec.camera), ccd=int(rec.ccd),
                              cube=str(rec.uri))
            rows.append(row)
            done = previous.get((t.name, ra_text, dec_text, row.cube, size_text))
            if done is not None:
                prefix = tpf_filename(row.cube, t.ra, t.dec, 1, 1).rsplit("_", 2)[0] + "_"
                if _whole_file(out_dir, done[0], done[1], tdir, prefix):
                    row.status, row.file, row.bytes = "skipped", done[0], done[1]
                    continue
            key = (row.cube, ra_text, dec_text, tdir)
            task = tasks.get(key)
            if task is None:
                label = f"cutout-{getattr(rec, 'sector_name', '') or rec.sector}-{t.index}"
                args = (row.cube, t.ra, t.dec, size, units, product, tdir, s3, window_args, limits)
                task = tasks[key] = BatchTask(args, label, [])
            task.rows.append(row)
    return rows, list(tasks.values())


def task_result(future: Any) -> dict[str, Any]:
    """A finished task's result dict, or an error dict when the task failed on the cluster (a
    worker died, the task was cancelled)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a worker died, the task was cancelled...
        return {"status": "error", "error": f"the task failed on the cluster: {describe_error(exc)}"}


def plan_batch(
    targets: str | os.PathLike | Iterable[Mapping[str, Any] | Sequence[Any]],
    *,
    size: float | Sequence[float],
    units: str = "px",
    sectors: Iterable[int] | None = None,
    out_dir: str | os.PathLike,
    catalog: Catalog,
    product: str = Product.SPOC,
    s3: S3Config | Mapping[str, Any] | None = None,
    manifest: str | os.PathLike | None = None,
    limits: Mapping[str, Any] | None = None,
    time_min: float | None = None,
    time_max: float | None = None,
    frame_bin: int = 1,
) -> BatchPlan:
    """Read the target table and decide every manifest row and the cutouts still to make.

    What :func:`run_batch` does before it reaches a cluster, for callers that run the tasks
    themselves (the service's job runner). A previous run's manifest at ``manifest`` (default
    ``out_dir/manifest.csv``) marks its finished, still whole outputs ``skipped`` (no task).
    ``limits`` (:class:`core.cutout_size.Limits`' fields) and the time window are handed to every
    task. Parameters are :func:`run_batch`'s.

    Raises
    ------
    InvalidInputError
        Bad ``size``, ``units``, ``product``, ``sectors`` or ``limits``, or a target CSV without
        ``ra``/``dec`` columns.
    NotFoundError
        The target CSV does not exist.
    """

    size_xy, units = _size_values(size, units)
    window = TimeWindow(time_min, time_max, frame_bin)
    product = Product.parse(product).value
    try:
        wanted = None if sectors is None else {int(s) for s in sectors}
    except (TypeError, ValueError):
        raise InvalidInputError(f"sectors must be sector numbers, got {sectors!r}", field="sectors") from None
    if limits is not None:
        from core.cutout_size import Limits

        try:
            limits = dataclasses.asdict(Limits(**dict(limits)))
        except TypeError as exc:
            raise InvalidInputError(f"limits: {exc}", field="limits") from None
    out = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.abspath(os.fspath(manifest)) if manifest is not None else os.path.join(
        out, "manifest.csv")
    config = dataclasses.asdict(s3) if isinstance(s3, S3Config) else (dict(s3) if s3 is not None else None)
    table = read_targets(targets)
    rows, tasks = _plan(table, catalog, size_xy, units, wanted, product, out, config,
                        _previous_outputs(manifest_path), limits, window)
    return BatchPlan(rows=rows, tasks=tasks, targets=len(table), bad=sum(1 for t in table if t.error),
                     manifest=manifest_path, out_dir=out)


# long: the docstring documents its 18 parameters; the work is done by plan_batch, dask_client and _run
def run_batch(
    targets: str | os.PathLike | Iterable[Mapping[str, Any] | Sequence[Any]],
    *,
    size: float | Sequence[float],
    units: str = "px",
    sectors: Iterable[int] | None = None,
    out_dir: str | os.PathLike,
    catalog: Catalog,
    scheduler: str | Client | None = None,
    workers: int | None = None,
    product: str = Product.SPOC,
    progress: bool | Callable[[int, int], Any] | None = None,
    memory_limit: str | float = DEFAULT_MEMORY_LIMIT,
    s3: S3Config | Mapping[str, Any] | None = None,
    manifest: str | os.PathLike | None = None,
    log_every: int = 100,
    checkpoint_s: float = 10.0,
    time_min: float | None = None,
    time_max: float | None = None,
    frame_bin: int = 1,
) -> BatchReport:
    """Cut a target pixel file for every target on every cube that contains it, on Dask.

    Parameters
    ----------
    targets : path or iterable
        A CSV with columns ``ra,dec`` (degrees) and optional ``name`` and ``sector`` (that row is
        cut from that sector only), or rows: mappings with those keys or ``(ra, dec[, name[,
        sector]])`` sequences. See :func:`read_targets`.
    size : int or (x, y)
        Cutout size, x first (as astrocut behaves); one value gives a square.
    units : {"px", "arcsec", "arcmin", "deg"}
        Units of ``size``. Angular sizes become pixels on each cube (rounded up, as astrocut).
    sectors : iterable of int, optional
        Only these sectors.
    out_dir : path
        Output root: ``{out_dir}/{name or ra_dec}/{legacy TPF name}``.
    catalog : Catalog
        Says which cubes contain a position (see the module docstring).
    scheduler : str or distributed.Client, optional
        A running scheduler's address (or a client). Default: a new LocalCluster for this run.
    workers : int, optional
        LocalCluster worker processes, one thread each (default: the CPU count, at most one per task).
    product : {SPOC, TICA}
        Which cubes.
    progress : bool or callable, optional
        None/True: a bar on a terminal, log lines otherwise; False: neither. A callable is called as
        ``progress(done, total)`` after each task (with the display); an exception it raises
        stops the run as an interruption does.
    memory_limit : str or number
        Memory per LocalCluster worker (default ``"2GiB"``).
    s3 : S3Config or mapping, optional
        S3 settings for ``s3://`` cubes, sent to the tasks as a plain dict (default: each
        worker's environment).
    manifest : path, optional
        Default ``out_dir/manifest.csv``; a previous run's there tells which outputs are done.
    log_every : int
        Log a progress line every this many tasks (no terminal).
    checkpoint_s : float
        Rewrite the manifest at most this often while tasks finish (0: after every batch of
        results that arrives).
    time_min, time_max : float, optional
        Keep the frames whose mid-exposure time (BTJD, TDB) lies in this inclusive window.
    frame_bin : int
        Average this many frames into each cadence (a trailing partial bin is dropped).

    Returns
    -------
    BatchReport

    Raises
    ------
    InvalidInputError
        Bad ``size``, ``units``, ``product``, ``sectors``, ``workers``, ``memory_limit``, or a
        target CSV without ``ra``/``dec`` columns.
    UnavailableError
        The scheduler cannot be reached.
    KeyboardInterrupt, or what ``progress`` raised
        After the manifest was written: tasks not finished are listed as errors (a running
        LocalCluster is shut down; on an outside cluster, tasks already running finish there).
    """
    t0 = time.monotonic()
    _size_values(size, units)  # every option is checked before any work
    workers, memory_limit = check_cluster_options(scheduler, workers, memory_limit)
    ProgressDisplay(0, label="cutouts", progress=progress)
    TimeWindow(time_min, time_max, frame_bin)  # checked before any work
    plan = plan_batch(targets, size=size, units=units, sectors=sectors, out_dir=out_dir, catalog=catalog,
                      product=product, s3=s3, manifest=manifest, time_min=time_min, time_max=time_max,
                      frame_bin=frame_bin)
    rows, tasks, out, manifest_path = plan.rows, plan.tasks, plan.out_dir, plan.manifest
    report = BatchReport(manifest=manifest_path, rows=rows, tasks=len(tasks))
    report.timings["plan"] = time.monotonic() - t0
    logger.info("batch: %d targets (%d bad rows), %d rows: %d done before, %d errors, %d to cut",
                plan.targets, plan.bad, len(rows), report.skipped, report.errors, len(tasks))
    write_manifest(manifest_path, [r for r in rows if r.status])
    if not tasks:
        report.timings["total"] = time.monotonic() - t0
        return report

    display = None
    try:
        t1 = time.monotonic()
        n_workers = None if scheduler is not None else min(workers or os.cpu_count() or 1, len(tasks))
        with dask_client(scheduler, workers=n_workers, memory_limit=memory_limit) as client:
            report.timings["cluster"] = time.monotonic() - t1
            # made once the cluster is up, so that its rate is the tasks' alone
            display = ProgressDisplay(len(tasks), label="cutouts", progress=progress, log_every=log_every,
                                      log=logger)
            _run(client, tasks, display, out, manifest_path, rows, checkpoint_s)
            report.timings["run"] = time.monotonic() - t1 - report.timings["cluster"]
    except BaseException as exc:
        report.interrupted = True
        why = f"not run: the batch was interrupted before this cutout ({describe_error(exc)})"
        for r in rows:
            if not r.status:
                r.status, r.error = "error", why
        raise
    finally:
        if display is not None:
            display.close()
        write_manifest(manifest_path, [r for r in rows if r.status])
        report.timings["total"] = time.monotonic() - t0
    return report


def record_result(task: BatchTask, result: Any, out_dir: str) -> str:
    """Write a task's result (a result dict, or the exception the task failed with on the
    cluster) into its manifest rows (``file`` relative to ``out_dir``); return the status."""
    if isinstance(result, BaseException) or not isinstance(result, dict):
        what = describe_error(result) if isinstance(result, BaseException) else repr(result)
        result = {"status": "error", "error": f"the task failed on the cluster: {what}"}
    status = result.get("status", "error")
    for row in task.rows:
        row.status = status
        if status == "error":
            row.error = str(result.get("error", "unknown error"))
        else:
            row.file = os.path.relpath(result["path"], out_dir).replace(os.sep, "/")
            row.bytes = int(result["bytes"])
    return status


def _run(client: Client, tasks: list[BatchTask], display: ProgressDisplay, out_dir: str, manifest_path: str,
         rows: list[ManifestRow], checkpoint_s: float) -> None:
    """Submit the tasks, one Dask task per target (:func:`cut_target_cubes`: its cubes cut together),
    in chunks (at most :data:`MAX_IN_FLIGHT` cutouts unfinished at a time) and record each result
    as it arrives; rewrite the manifest every ``checkpoint_s`` seconds. On any exception (an
    interruption) the unfinished tasks are cancelled before it propagates.

    ``client.map`` of a chunk and ``as_completed(with_results=True).batches()`` cost the client
    about half what one ``submit`` and one ``result()`` per task do (measured: 1000 trivial
    tasks, 2 workers); with cutouts of a millisecond or two that overhead is most of a task."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]  # keys unique per run: a rerun never reuses an old run's result
    groups = _by_target(tasks)
    inflight: dict[str, tuple[Any, list[BatchTask]]] = {}  # key -> (future, the target's tasks)
    done = as_completed(with_results=True, raise_errors=False)
    chunk = max(1, min(SUBMIT_CHUNK, MAX_IN_FLIGHT))  # targets per client.map
    submitted = 0
    cutouts = 0  # cutouts submitted and not yet finished

    def submit_chunk() -> bool:
        """Submit the next chunk of targets when its cutouts fit beside those in flight (or none is)."""
        nonlocal submitted, cutouts
        part = groups[submitted : submitted + chunk]
        size = sum(len(g) for g in part)
        if not part or (cutouts and cutouts + size > MAX_IN_FLIGHT):
            return False
        keys = [f"{g[0].label}-{run}-{submitted + i}" for i, g in enumerate(part)]  # unique even for twins
        futures = client.map(cut_target_cubes, [[t.args for t in g] for g in part], key=keys, pure=False)
        for future, group in zip(futures, part):
            inflight[future.key] = (future, group)
        submitted += len(part)
        cutouts += size
        done.update(futures)
        return True

    last = time.monotonic()
    try:
        while submit_chunk():
            pass
        for batch in done.batches():
            for future, result in batch:
                group = inflight.pop(future.key)[1]
                cutouts -= len(group)
                results = result if isinstance(result, list) and len(result) == len(group) else [result] * len(group)
                for task, one in zip(group, results):
                    display.update(record_result(task, one, out_dir))
            while submit_chunk():
                pass
            if time.monotonic() - last >= checkpoint_s:
                write_manifest(manifest_path, [r for r in rows if r.status])
                last = time.monotonic()
    except BaseException:
        try:
            client.cancel([f for f, _ in inflight.values()])
        except Exception:  # the client may be what failed; the first error is the one raised
            logger.debug("could not cancel the unfinished tasks", exc_info=True)
        raise
