"""Fair shares between clients (app.jobs.fair), as logic and as a service under 50 jobs.

Fairness is round-robin between owners (client addresses): the next job admitted is one of the
owner with the fewest running jobs (the one served longest ago among equals), and free Dask slots
go to owners in turn. Observable consequence, asserted on a real server: while every owner still
has jobs to finish, no owner is more than ``jobs_max_running + 1`` finished jobs ahead of another,
even when one client queued all its jobs before the others (a first-come-first-served runner
would finish eight of that client's jobs before anyone else's first).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.jobs.fair import Queued, RoundRobin, next_admission
from tests.uws_client import job_info, post_job, wait_phase

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------------------------
# the logic
# ------------------------------------------------------------------------------------------


def test_admission_prefers_the_owner_with_fewest_running_then_the_least_recently_served():
    waiting = [Queued("a1", "a", 1.0), Queued("a2", "a", 2.0), Queued("b1", "b", 3.0), Queued("c1", "c", 4.0)]
    # nobody runs: the earliest queued job
    assert next_admission(waiting, Counter(), {}).job_id == "a1"
    # a runs one: b and c run none; neither was served, so the earlier queued
    assert next_admission(waiting[1:], Counter(a=1), {"a": 1}).job_id == "b1"
    # equal running counts: the owner served longest ago, not the earliest queued job
    assert next_admission(waiting[1:], Counter(a=1, b=1, c=1), {"a": 5, "b": 3, "c": 4}).job_id == "b1"
    assert next_admission([], Counter(), {}) is None


def test_round_robin_gives_turns_in_a_cycle_and_skips_keys_not_ready():
    rr = RoundRobin()
    for key in "abc":
        rr.add(key)
    rr.add("a")  # already there: no second turn
    ready = {"a", "b", "c"}
    assert [rr.next(ready.__contains__) for _ in range(5)] == ["a", "b", "c", "a", "b"]
    ready.discard("c")
    assert [rr.next(ready.__contains__) for _ in range(3)] == ["a", "b", "a"]
    assert rr.any(ready.__contains__) and not rr.any(lambda k: False)
    rr.remove("b")
    assert rr.next(lambda k: False) is None and rr.keys() in (["a", "c"], ["c", "a"])


# ------------------------------------------------------------------------------------------
# the service
# ------------------------------------------------------------------------------------------

OWNERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
JOBS_EACH = 10
RUNNING = 2


def _post_all(base: str, owner: str, pos: list[str]) -> list[tuple[str, str]]:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=owner), timeout=60) as client:
        return [(owner, post_job(base, data={"POS": pos, "x": "3", "PHASE": "RUN", "RUNID": f"{owner}-{i}"},
                                 client=client).headers["location"]) for i in range(JOBS_EACH)]


def test_fifty_jobs_of_five_clients_all_complete_with_fair_progress(make_server, service_data):
    from core.synthetic.ffis import DEMO_DEC, DEMO_RA

    cubes, _, _ = service_data
    server = make_server(cube_dirs=[str(cubes["spoc38"].parent)], jobs_dask_workers=2, jobs_dask_memory_limit="1GiB",
                         jobs_max_running=RUNNING, jobs_tasks_in_flight=4, jobs_quantum=1,
                         jobs_max_active_per_client=JOBS_EACH, jobs_max_active=len(OWNERS) * JOBS_EACH)
    base = f"{server.url}/api/v0.1/async"
    pos = [f"{DEMO_RA} {DEMO_DEC}", f"{DEMO_RA + 0.003} {DEMO_DEC - 0.002}"]  # 2 targets x 2 cubes each
    # the first client queues all its jobs first; then the four others post theirs at once
    jobs = _post_all(base, OWNERS[0], pos)
    with ThreadPoolExecutor(len(OWNERS) - 1) as pool:
        for posted in pool.map(lambda owner: _post_all(base, owner, pos), OWNERS[1:]):
            jobs += posted
    assert len(jobs) == 50

    finished = []
    with httpx.Client(timeout=30) as client:
        for owner, url in jobs:
            job = wait_phase(url, deadline_s=240, client=client)
            assert job.phase == "COMPLETED", job.errorsummary
            assert job_info(job, "ok") == 4 and job_info(job, "errors") == 0
            finished.append((job.endtime.unix, job.starttime.unix, owner))
    # in the order the jobs ended: while every owner still has jobs left, nobody is far ahead
    finished.sort()
    done: Counter = Counter()
    for _, _, owner in finished:
        done[owner] += 1
        if done[owner] == JOBS_EACH:
            break  # from here on one owner has nothing left: the others rightly go on alone
        spread = max(done[o] for o in OWNERS) - min(done[o] for o in OWNERS)
        assert spread <= RUNNING + 1, f"after {sum(done.values())} jobs ended: {dict(done)}"
    # and every owner had jobs finished before the first owner ran out of jobs
    assert min(done[o] for o in OWNERS) >= JOBS_EACH - RUNNING - 2
