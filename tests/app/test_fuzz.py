"""Schemathesis fuzzing of the live service against the COMMITTED ``openapi/openapi.json``.

Every operation gets a bounded, derandomized run (schema examples, coverage cases, then
``MAX_EXAMPLES`` generated positive and negative cases) sent over real HTTP to the ``live_server``
fixture (uvicorn on 127.0.0.1). Each response must:

- not be a 5xx (``not_a_server_error``),
- use a status code, content type, headers and body the document declares (the conformance checks),
- answer negative (schema-violating) input with a 4xx (``negative_data_rejection``),
- arrive within ``TIMEOUT_S`` (no hangs: requests raises and the case fails).

The document's examples name data the server holds (the demo position, sector 38, the images
under the image root, a path across the demo cube, a finished job), so every operation is reached
with a request that succeeds, not only refused.

``positive_data_acceptance`` is left out on purpose: a valid request may still name an image that
is not under the image root (403/404) or ask for more than the server's limits (413), which the
document states as possible answers but cannot express as schema constraints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as oa_checks

from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi" / "openapi.json"

#: generated cases per operation (on top of the schema's examples and coverage cases)
MAX_EXAMPLES = 25
#: seconds a single request may take before the case fails as a hang
TIMEOUT_S = 20

#: (status, media type) counts per operation, filled by test_openapi_conformance
SEEN: dict[str, Counter] = {}

CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_headers_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.negative_data_rejection,
]


def _config() -> SchemathesisConfig:
    config = SchemathesisConfig()
    config.projects.default.generation.update(
        max_examples=MAX_EXAMPLES, deterministic=True, modes=["positive", "negative"], no_shrink=True
    )
    return config


def _resolver_for(sector):
    """A deterministic ephemeris resolver: names starting with 'demo' cross the test cube's field
    during its frames; any other name is unknown (404), as a real resolver would answer."""
    from core.errors import NotFoundError
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    t0, t1 = float(sector.tstart[0]), float(sector.tstop[-1])

    def resolve(obj_id: str, obj_type: str | None) -> dict:
        if not obj_id.lower().startswith("demo"):
            raise NotFoundError(f"unknown object {obj_id!r}", field="obj_id")
        return {"time": [t0, (t0 + t1) / 2, t1], "ra": [DEMO_RA - 0.01, DEMO_RA, DEMO_RA + 0.01],
                "dec": [DEMO_DEC, DEMO_DEC, DEMO_DEC]}

    return resolve


def _example_job(app, url: str):
    """Run the job the document's examples name (``EXAMPLE_JOB_ID``: one demo target, 5 x 5) to
    completion; return a thread that puts it back whenever a fuzzed DELETE destroys it."""
    import shutil
    import threading

    import httpx

    from app.routers.jobs import EXAMPLE_JOB_ID, EXAMPLE_RESULT
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    jobs = app.state.services.jobs
    jobs.store.new_id = lambda: EXAMPLE_JOB_ID  # the one job made here gets the documented id
    try:
        r = httpx.post(f"{url}/tesscut/api/v0.1/async", data={"x": "5", "PHASE": "RUN"},
                       files={"targets": ("t.csv", f"ra,dec,name\n{DEMO_RA},{DEMO_DEC},demo\n")}, timeout=60)
        assert r.status_code == 303, r.text
    finally:
        del jobs.store.new_id
    wait_until(lambda: jobs.store.require(EXAMPLE_JOB_ID).phase == "COMPLETED", timeout=180, interval=0.2,
               message="the example job completed")
    folder = jobs.store.path(EXAMPLE_JOB_ID, "job.json").parent
    assert (folder / "out" / EXAMPLE_RESULT[0] / EXAMPLE_RESULT[1]).exists(), sorted(folder.rglob("*.fits"))
    kept = folder.parent.parent / "example-job-copy"
    shutil.copytree(folder, kept)
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(0.2):
            if not folder.exists():
                shutil.copytree(kept, folder, dirs_exist_ok=True)

    threading.Thread(target=keep, daemon=True).start()
    return stop


@pytest.fixture(scope="module")
def fuzz_server(service_data, spoc_sector, tmp_path_factory):
    """The service as ``live_server`` configures it, plus an ephemeris resolver (without one, a
    moving-target name answers 503 by design: see test_tesscut/test_clients), the image root as
    the Zcut survey ``deep`` and the Hapcut survey, and the finished job the document's examples
    name, on its own loopback port; yields the base URL."""
    from app.main import create_app
    from app.settings import Settings

    try:
        from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
    except ImportError:  # pragma: no cover - tests/ itself on sys.path
        from conftest import _free_port, start_uvicorn, stop_uvicorn

    cubes, image_root, _images = service_data
    cfg = Settings(
        cube_dirs=[str(cubes["spoc38"].parent)], image_roots=[str(image_root)],
        surveys={"deep": [str(image_root)], "hap": [str(image_root)]},
        work_dir=tmp_path_factory.mktemp("fuzz-work"), port=_free_port(), max_cutout_side=50,
        max_cutout_volume=20 * 20 * 10, max_upload_bytes=2_000_000, workers=2, queue_size=8,
        request_timeout_s=60, log_level="warning", jobs_dask_workers=1,
    )
    app = create_app(cfg, resolver=_resolver_for(spoc_sector))
    server, thread = start_uvicorn(app, cfg.host, cfg.port)
    url = f"http://{cfg.host}:{cfg.port}"
    keeper = None
    try:
        keeper = _example_job(app, url)
        yield url
    finally:
        if keeper is not None:
            keeper.set()
        stop_uvicorn(server, thread)


schema = schemathesis.openapi.from_path(OPENAPI, config=_config())
# The /api/v0.1 mount is the same router as /tesscut/api/v0.1: fuzz it once.
schema = schema.exclude(path_regex=r"^/api/v0\.1/")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_openapi_conformance(case, fuzz_server):
    response = case.call_and_validate(base_url=fuzz_server, checks=CHECKS, timeout=TIMEOUT_S)
    media = response.headers.get("content-type") or [""]  # schemathesis keeps header value lists
    media = (media[0] if isinstance(media, list) else media).split(";")[0]
    SEEN.setdefault(f"{case.method} {case.path}", Counter())[(response.status_code, media)] += 1


def test_fuzzing_reached_the_data():
    """The run above was not all 400s: cutouts and sectors answered from the hosted cubes."""
    if not SEEN:
        pytest.skip("test_openapi_conformance did not run in this session")
    for op, counts in sorted(SEEN.items()):
        print(op, dict(counts))
    astrocut = SEEN["GET /tesscut/api/v0.1/astrocut"] + SEEN["POST /tesscut/api/v0.1/astrocut"]
    assert astrocut[(200, "application/zip")] > 0  # the schema's example hits the cube
    assert astrocut[(200, "application/json")] > 0  # the TESScut "no data" answer
    assert any(status == 400 for status, _ in astrocut)  # negative cases were sent and refused
    # every operation's examples reach data: each answered something other than an error at least once,
    # but those that change a finished job (its parameters, duration, destruction), which UWS refuses,
    # and the error of a job that has none (404 by design); methods a path lacks (405) are not operations
    refused_by_design = {"POST /tesscut/api/v0.1/async/{job_id}/parameters",
                         "POST /tesscut/api/v0.1/async/{job_id}/executionduration",
                         "POST /tesscut/api/v0.1/async/{job_id}/destruction",
                         "POST /tesscut/api/v0.1/async/{job_id}/phase",
                         "GET /tesscut/api/v0.1/async/{job_id}/error"}
    never = [op for op, counts in SEEN.items() if op.split()[0] in ("GET", "POST")
             and op not in refused_by_design and any(status != 405 for status, _ in counts)
             and not any(status < 400 for status, _ in counts)]
    assert not never, f"operations whose every answer was an error: {never}"
    wcs = SEEN["GET /tesscut/api/v0.1/ffi_wcs"]
    assert wcs[(200, "application/json")] > 0
    soda = SEEN["GET /soda/sync"]
    assert soda[(200, "application/fits")] > 0  # the schema's example ID and POS cut the cube
    assert any(status == 400 and media == "text/plain" for status, media in soda)  # DALI text errors
