"""Async cutout jobs, IVOA UWS 1.1: ``/async`` (mounted under ``/api/v0.1`` and ``/tesscut/api/v0.1``).

The job list ``/async`` (GET lists the caller's jobs: ``PHASE``, ``AFTER``, ``LAST``; POST creates
one and answers ``303 See Other`` to it) and each job ``/async/{job}`` with the UWS
sub-resources ``phase``, ``executionduration``, ``destruction``, ``error``, ``quote``,
``parameters``, ``owner`` and ``results``. Results: ``results/manifest.csv``,
``results/result.zip`` (everything, streamed) and one URL per target pixel file,
``results/{target}/{file}``. Parameter names are read without regard to case (DALI).

A job is owned by the client address that created it (no accounts here): the list shows that
address's jobs; a job's id (128 random bits) is what lets anyone holding its URL reach it.
Handlers parse, call :class:`app.jobs.service.JobService` (on the worker pool for anything that
touches the disk) and answer; a blocking poll (``WAIT``) waits on the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from app.dependencies import Services, ServicesDep
from app.jobs.params import Upload, parse_int, parse_phases, parse_timestamp, parse_wait, table_bytes_limit
from app.jobs.service import JobService
from app.jobs.store import Phase
from app.jobs.uws import (
    ResultRef,
    iso_time,
    job_document,
    job_list_document,
    parameters_document,
    results_document,
)
from app.params.responses import ERROR_RESPONSES
from app.pipeline import client_gone
from app.streaming import send
from core.errors import InvalidInputError, NotFoundError, TooLargeError
from core.product import Product

__all__ = ["router"]

router = APIRouter(tags=["Async jobs (UWS)"], responses={**ERROR_RESPONSES, 429: {
    **ERROR_RESPONSES[429], "description": "Too many jobs of this client or in all (Retry-After; the limit is named)"}})

XML = "application/xml"

#: the job the OpenAPI document's examples name (a UWS client learns a job's id from its creation's
#: Location; the schema test's server keeps a finished job under this id, so the examples resolve)
EXAMPLE_JOB_ID = "example-job-0001"
EXAMPLE_RESULT = ("demo", "tess-s0038-2-2_217.428938_-62.679492_5x5_astrocut.fits")
JobId = Annotated[str, Path(description="The job's id (the last part of the URL its creation answered).",
                            examples=[EXAMPLE_JOB_ID])]
ResultFolder = Annotated[str, Path(description="The target's folder (its name, made safe).",
                                   examples=[EXAMPLE_RESULT[0]])]
ResultName = Annotated[str, Path(description="A target pixel file of the target.", examples=[EXAMPLE_RESULT[1]])]

_FORM_FIELDS = {
    "targets": {"type": "string", "format": "binary",
                "description": "CSV with columns ra, dec (degrees) and optional name, sector: the table "
                               "`cutout batch` reads. One row per target; a bad row becomes a manifest error row."},
    "POS": {"type": "array", "items": {"type": "string"}, "description": "Targets as 'ra dec' (degrees), repeated."},
    "x": {"type": "number", "description": "Cutout width in `units` (default 5)."},
    "y": {"type": "number", "description": "Cutout height in `units` (default: x)."},
    "units": {"type": "string", "description": "px (default), d (deg), m (arcmin) or s (arcsec)."},
    "sector": {"type": "array", "items": {"type": "string"}, "description": "Only these sectors (repeat, or 28,68)."},
    "product": {"type": "string", "enum": Product.names(), "description": f"Cube product (default {Product.default()})."},
    "time_min": {"type": "number", "description": "Keep frames from this mid-exposure time (BTJD, TDB), inclusive."},
    "time_max": {"type": "number", "description": "Keep frames up to this mid-exposure time (BTJD, TDB), inclusive."},
    "frame_bin": {"type": "integer", "minimum": 1, "description": "Average this many frames into each cadence."},
    "RUNID": {"type": "string", "description": "A label of the client's, returned as the job's runId."},
    "PHASE": {"type": "string", "enum": ["RUN"], "description": "RUN: start the job at once."},
}


def _form_body(fields: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields}
    return {"requestBody": {"required": required, "content": {
        "multipart/form-data": {"schema": schema}, "application/x-www-form-urlencoded": {"schema": schema}}}}


def _query(*names: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    return {"parameters": [{"name": n, "in": "query", "required": False, "description": d, "schema": s}
                           for n, d, s in names]}


def _jobs(request: Request) -> JobService:
    return request.app.state.services.jobs


def _owner(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _base(request: Request) -> str:
    """The job list's absolute URL, under the prefix this request came through."""
    url = str(request.url.replace(query="", fragment=""))
    return url[: url.index("/async") + len("/async")]


def _query_values(request: Request, name: str) -> list[str]:
    return [v for k, v in request.query_params.multi_items() if k.upper() == name]


def _one_query(request: Request, name: str) -> str | None:
    values = _query_values(request, name)
    if len(values) > 1:
        raise InvalidInputError(f"{name} is single-valued but was given {len(values)} times", field=name)
    return values[0] if values else None


async def _form(request: Request, services: Services) -> list[tuple[str, Any]]:
    """The request's form as (name, value) items; uploads read into :class:`Upload` (a target
    table may hold 1 KiB a row on average: a bigger upload is refused before it is read)."""
    limit = services.settings.jobs_max_targets + 32
    table_bytes = table_bytes_limit(services.settings.jobs_max_targets)
    items: list[tuple[str, Any]] = []
    async with request.form(max_files=2, max_fields=limit) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if value.size is not None and value.size > table_bytes:
                    raise TooLargeError(f"the uploaded {name[:40]} has {value.size} bytes, more than {table_bytes} "
                                        f"(1 KiB for each of jobs_max_targets rows)", field=name[:40])
                items.append((name, Upload(value.filename, await value.read())))
            else:
                items.append((name, value))
    return items


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _text(value: str | None) -> Response:
    return Response("" if value is None else value, media_type="text/plain")


def _results(base: str, job_id: str, files: dict[str, int], manifest: bool) -> list[ResultRef]:
    url = f"{base}/{job_id}/results"
    if not manifest:
        return []
    refs = [ResultRef("result", f"{url}/result.zip", "application/zip"),
            ResultRef("manifest", f"{url}/manifest.csv", "text/csv")]
    refs += [ResultRef(rel, f"{url}/{rel}", "application/fits", size) for rel, size in sorted(files.items())]
    return refs


async def _document(request: Request, services: Services, record: Any) -> Response:
    jobs = _jobs(request)
    base = _base(request)

    def build() -> bytes:
        files = jobs.result_files(record.job_id)
        manifest = jobs.store.path(record.job_id, "manifest.csv").exists()
        return job_document(record, results=_results(base, record.job_id, files, manifest),
                            targets_href=f"{base}/{record.job_id}/parameters/targets")

    return Response(await services.pool.run(build), media_type=XML, headers={"Cache-Control": "no-cache"})


# ------------------------------------------------------------------------------------------
# the job list
# ------------------------------------------------------------------------------------------


@router.get("/async", response_class=Response, responses={200: {"content": {XML: {}}}},
            openapi_extra=_query(("PHASE", "Only jobs in this phase (repeatable).", {"type": "string"}),
                                 ("AFTER", "Only jobs created after this ISO 8601 time.", {"type": "string"}),
                                 ("LAST", "Only the most recently created N jobs.", {"type": "integer"})))
async def list_jobs(request: Request, services: ServicesDep) -> Response:
    """This client address's jobs (a UWS ``jobs`` list), most recently created first."""
    phases = parse_phases(_query_values(request, "PHASE"), [p.value for p in Phase])
    after = _one_query(request, "AFTER")
    last = _one_query(request, "LAST")
    records = await services.pool.run(
        _jobs(request).list, _owner(request), phases or None,
        None if after is None else parse_timestamp("AFTER", after),
        None if last is None else parse_int("LAST", last, low=0, high=1_000_000))
    return Response(job_list_document(records, _base(request)), media_type=XML, headers={"Cache-Control": "no-cache"})


@router.post("/async", status_code=303, response_class=RedirectResponse,
             responses={303: {"description": "The job was created: Location is its URL."}},
             openapi_extra=_form_body(_FORM_FIELDS))
async def create_job(request: Request, services: ServicesDep) -> Response:
    """Create a job from a form (a `targets` CSV upload or repeated `POS`, the cutout parameters
    of `/astrocut`, `RUNID`, `PHASE=RUN` to start it at once); answers 303 to the job."""
    items = await _form(request, services)
    record = await services.pool.run(_jobs(request).create, _owner(request), items)
    return _see_other(f"{_base(request)}/{record.job_id}")


# ------------------------------------------------------------------------------------------
# one job
# ------------------------------------------------------------------------------------------


@router.get("/async/{job_id}", response_class=Response, responses={200: {"content": {XML: {}}}},
            openapi_extra=_query(("WAIT", ("Block up to this many seconds (-1: the most the server allows) "
                                           "until the phase changes."), {"type": "integer"}),
                                 ("PHASE", "With WAIT: block only if the job is in this phase.", {"type": "string"})))
async def get_job(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The UWS job document: phase, times, parameters, results, progress in jobInfo."""
    wait = parse_wait(_one_query(request, "WAIT"), services.settings.jobs_max_wait_s)
    phase = _one_query(request, "PHASE")
    if phase is not None:
        parse_phases([phase], [p.value for p in Phase])
    record = await _jobs(request).wait(job_id, wait, phase)
    return await _document(request, services, record)


@router.delete("/async/{job_id}", status_code=303, response_class=RedirectResponse)
async def delete_job(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Destroy the job (aborting it if it runs); 303 to the job list."""
    await services.pool.run(_jobs(request).delete, job_id)
    return _see_other(_base(request))


@router.post("/async/{job_id}", status_code=303, response_class=RedirectResponse,
             openapi_extra=_form_body({"ACTION": {"type": "string", "enum": ["DELETE"]}}, required=True))
async def post_job(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """`ACTION=DELETE`: as DELETE (UWS); 303 to the job list."""
    items = await _form(request, services)
    names = {name.upper() for name, _ in items}
    actions = [v for n, v in items if n.upper() == "ACTION"]
    if names != {"ACTION"} or actions != ["DELETE"]:
        raise InvalidInputError("a job's URL takes only ACTION=DELETE (parameters go to its /parameters)",
                                field="ACTION")
    await services.pool.run(_jobs(request).delete, job_id)
    return _see_other(_base(request))


@router.get("/async/{job_id}/phase", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_phase(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The job's phase."""
    return _text((await services.pool.run(_jobs(request).store.require, job_id)).phase)


@router.post("/async/{job_id}/phase", status_code=303, response_class=RedirectResponse,
             openapi_extra=_form_body({"PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}, required=True))
async def post_phase(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """`PHASE=RUN` starts a PENDING job; `PHASE=ABORT` aborts one not finished; 303 to the job."""
    value = _single(await _form(request, services), "PHASE")
    await services.pool.run(_jobs(request).set_phase, job_id, value)
    return _see_other(f"{_base(request)}/{job_id}")


def _single(items: list[tuple[str, Any]], name: str) -> str:
    if {n.upper() for n, _ in items} != {name} or len(items) != 1 or not isinstance(items[0][1], str):
        raise InvalidInputError(f"this resource takes one {name} value", field=name)
    return items[0][1]


@router.get("/async/{job_id}/executionduration", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def get_execution_duration(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Seconds the job may run."""
    return _text(str((await services.pool.run(_jobs(request).store.require, job_id)).execution_duration))


@router.post("/async/{job_id}/executionduration", status_code=303, response_class=RedirectResponse,
             openapi_extra=_form_body({"EXECUTIONDURATION": {"type": "integer"}}, required=True))
async def post_execution_duration(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Ask for another executionDuration (before the job runs; at most `jobs_max_execution_s`)."""
    value = _single(await _form(request, services), "EXECUTIONDURATION")
    await services.pool.run(_jobs(request).set_execution_duration, job_id, value)
    return _see_other(f"{_base(request)}/{job_id}")


@router.get("/async/{job_id}/destruction", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_destruction(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """When the job and its results are destroyed (ISO 8601, UTC)."""
    return _text(iso_time((await services.pool.run(_jobs(request).store.require, job_id)).destruction))


@router.post("/async/{job_id}/destruction", status_code=303, response_class=RedirectResponse,
             openapi_extra=_form_body({"DESTRUCTION": {"type": "string"}}, required=True))
async def post_destruction(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Ask for another destruction time (no later than creation + `jobs_retention_s`)."""
    value = _single(await _form(request, services), "DESTRUCTION")
    await services.pool.run(_jobs(request).set_destruction, job_id, value)
    return _see_other(f"{_base(request)}/{job_id}")


@router.get("/async/{job_id}/error", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_error(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Why the job failed or was aborted (404 when it did not)."""
    record = await services.pool.run(_jobs(request).store.require, job_id)
    if not record.error:
        raise NotFoundError(f"job {job_id[:80]} has no error", field="error")
    return _text(record.error)


@router.get("/async/{job_id}/quote", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_quote(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The predicted completion time: empty, as this service does not predict one."""
    await services.pool.run(_jobs(request).store.require, job_id)
    return _text("")


@router.get("/async/{job_id}/owner", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_owner(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The client address that created the job."""
    return _text((await services.pool.run(_jobs(request).store.require, job_id)).owner)


@router.get("/async/{job_id}/parameters", response_class=Response, responses={200: {"content": {XML: {}}}})
async def get_parameters(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The job's parameters (a UWS ``parameters`` document; the target table by reference)."""
    record = await services.pool.run(_jobs(request).store.require, job_id)
    return Response(parameters_document(record, f"{_base(request)}/{job_id}/parameters/targets"), media_type=XML)


@router.post("/async/{job_id}/parameters", status_code=303, response_class=RedirectResponse,
             openapi_extra=_form_body({k: v for k, v in _FORM_FIELDS.items() if k != "PHASE"}, required=True))
async def post_parameters(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """Change a PENDING job's parameters (the creation form's); 303 to the job."""
    items = await _form(request, services)
    await services.pool.run(_jobs(request).set_parameters, job_id, items)
    return _see_other(f"{_base(request)}/{job_id}")


@router.get("/async/{job_id}/parameters/targets", response_class=FileResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def get_targets(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The job's target table as given (CSV)."""
    jobs = _jobs(request)
    await services.pool.run(jobs.store.require, job_id)
    return FileResponse(jobs.store.path(job_id, "targets.csv"), media_type="text/csv", filename=f"{job_id}-targets.csv")


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


@router.get("/async/{job_id}/results", response_class=Response, responses={200: {"content": {XML: {}}}})
async def get_results(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The results list: the zip, the manifest and every target pixel file (once the job is over)."""
    jobs = _jobs(request)

    def build() -> bytes:
        jobs.store.require(job_id)
        manifest = jobs.store.path(job_id, "manifest.csv").exists()
        return results_document(_results(_base(request), job_id, jobs.result_files(job_id), manifest))

    return Response(await services.pool.run(build), media_type=XML)


@router.get("/async/{job_id}/results/manifest.csv", response_class=FileResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def get_manifest(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """One row per (target, cube): the columns of `cutout batch`'s manifest."""
    jobs = _jobs(request)
    await services.pool.run(jobs.store.require, job_id)
    path = jobs.store.path(job_id, "manifest.csv")
    if not await services.pool.run(path.exists):
        raise NotFoundError(f"job {job_id[:80]} has no manifest yet (it is not finished)", field="result")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}-manifest.csv")


@router.get("/async/{job_id}/results/result.zip", response_class=Response,
            responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
async def get_zip(request: Request, job_id: JobId, services: ServicesDep) -> Response:
    """The whole result, streamed as one zip: manifest.csv and every TPF under its target's folder."""
    answer = await services.pool.run(_jobs(request).zip_answer, job_id)
    return await send(answer, pool=services.pool, budget=services.budget.for_request(lambda: client_gone(request.receive)))


@router.get("/async/{job_id}/results/{folder}/{name}", response_class=FileResponse,
            responses={200: {"content": {"application/fits": {}}}})
async def get_result_file(request: Request, job_id: JobId, folder: ResultFolder, name: ResultName,
                          services: ServicesDep) -> Response:
    """One target pixel file of the results."""
    path = await services.pool.run(_jobs(request).result_path, job_id, f"{folder}/{name}")
    return FileResponse(path, media_type="application/fits", filename=name)
