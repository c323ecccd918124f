"""The async jobs' limits over HTTP: 413 for a job too big, 429 + Retry-After for too many jobs.

Each message names its setting. The jobs here stay PENDING (or are aborted before running), so no
Dask cluster is started.
"""

from __future__ import annotations

import httpx
import pytest

from tests.uws_client import post_job

pytestmark = pytest.mark.timeout(120)


def _client(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (a distinct owner: 127.0.0.x)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.fixture
def limited(make_server, service_data):
    cubes, _, _ = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], jobs_max_targets=5, jobs_max_active_per_client=2,
                         jobs_max_active=3, jobs_max_stored_per_client=3, jobs_max_result_bytes=200_000,
                         max_upload_bytes=4000)
    return server, f"{server.url}/api/v0.1/async"


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_job_too_big_is_refused_with_413_naming_the_limit(limited):
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    _, base = limited
    six = [f"{DEMO_RA} {DEMO_DEC}"] * 6
    error = _error(post_job(base, data={"POS": six}, expect=413), 413)
    assert error["field"] == "POS" and "jobs_max_targets" in error["message"]
    table = "ra,dec\n" + "1,2\n" * 6
    error = _error(post_job(base, files={"targets": ("t.csv", table.encode())}, expect=413), 413)
    assert error["field"] == "targets" and "jobs_max_targets" in error["message"]
    # five rows, comments and blank lines aside, are within the limit
    table = "# my targets\nra,dec\n" + "1,2\n\n" * 5
    post_job(base, files={"targets": ("t.csv", table.encode())})
    # the results' size, estimated from the catalog: 2 cubes x a 40x40 TPF of 10 frames > 200 kB
    error = _error(post_job(base, data={"POS": f"{DEMO_RA} {DEMO_DEC}", "x": "40"}, expect=413), 413)
    assert error["field"] == "targets" and "jobs_max_result_bytes" in error["message"]
    error = _error(post_job(base, data={"POS": "1 2", "x": "5000"}, expect=413), 413)
    assert error["field"] == "x" and "max_cutout_side" in error["message"]
    error = _error(post_job(base, data={"POS": "1 2", "x": "30", "units": "d"}, expect=413), 413)
    assert error["field"] == "x"
    # the upload cap bounds the table's bytes before anything reads it
    big = ("ra,dec\n" + "1.000000000,2.000000000\n" * 400).encode()
    _error(post_job(base, files={"targets": ("t.csv", big)}, expect=413), 413)


def test_too_many_jobs_answer_429_with_retry_after_naming_the_limit(limited):
    _, base = limited
    with _client("127.0.0.2") as a, _client("127.0.0.3") as b, _client("127.0.0.4") as c:
        first = post_job(base, data={"POS": "1 2"}, client=a).headers["location"]
        post_job(base, data={"POS": "1 2"}, client=a)
        refused = post_job(base, data={"POS": "1 2"}, client=a, expect=429)
        assert int(refused.headers["retry-after"]) > 0
        assert "jobs_max_active_per_client" in _error(refused, 429)["message"]
        post_job(base, data={"POS": "1 2"}, client=b)  # another address: its own share
        refused = post_job(base, data={"POS": "1 2"}, client=c, expect=429)  # but 3 in all is the most
        assert "jobs_max_active" in _error(refused, 429)["message"] and int(refused.headers["retry-after"]) > 0
        # an aborted job is finished: it no longer counts as active, but it is still kept
        assert a.post(f"{first}/phase", data={"PHASE": "ABORT"}).status_code == 303
        assert a.get(f"{first}/phase").text == "ABORTED"
        post_job(base, data={"POS": "1 2"}, client=c)
        # deleting a job makes room
        b_job = b.get(base).text.split('xlink:href="')[1].split('"')[0]
        assert b.delete(b_job).status_code == 303
        post_job(base, data={"POS": "1 2"}, client=a)
        refused = post_job(base, data={"POS": "1 2"}, client=a, expect=429)  # a has 2 active again
        assert "jobs_max_active_per_client" in _error(refused, 429)["message"]
        jobs = [j.split('"')[0] for j in a.get(base).text.split('xlink:href="')[1:]]
        assert len(jobs) == 3
        for url in jobs:
            assert a.post(f"{url}/phase", data={"PHASE": "ABORT"}).status_code == 303
        # three kept jobs (finished or not) is the most one address may keep until their destruction
        refused = post_job(base, data={"POS": "1 2"}, client=a, expect=429)
        assert "jobs_max_stored_per_client" in _error(refused, 429)["message"]
        assert int(refused.headers["retry-after"]) > 3600  # when the first one is destroyed
        assert a.delete(jobs[0]).status_code == 303
        post_job(base, data={"POS": "1 2"}, client=a)


def test_the_service_keeps_at_most_jobs_max_stored(make_server, service_data):
    cubes, _, _ = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], jobs_max_stored=2)
    base = f"{server.url}/api/v0.1/async"
    with _client("127.0.0.2") as a, _client("127.0.0.3") as b:
        post_job(base, data={"POS": "1 2"}, client=a)
        post_job(base, data={"POS": "1 2"}, client=b)
        refused = post_job(base, data={"POS": "1 2"}, client=b, expect=429)
        assert "(jobs_max_stored = 2)" in _error(refused, 429)["message"] and int(refused.headers["retry-after"]) > 3600
