"""Bounded memory per request: the budget's admission (wait, 503, 413), streamed TPFs byte-identical
to the engine's, and a client that goes away releasing its budget, its worker and its spool.

The server here hosts one real-size sparse cube (2078 x 2136 px x 3,705 frames: its data a hole, so
reads cost no disk), with TPFs over 1 MiB streamed in 8 MiB bands through a pixel spool, a memory
budget for one streamed TPF at a time, no queue, and a disk budget of 200 MB.
"""

from __future__ import annotations

import asyncio
import io
import os
import zipfile

import httpx
import pytest

from app.budget import Budget
from core.errors import TooLargeError, UnavailableError
from tests.polling import async_wait_until, wait_until

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024


# -- the budget alone ---------------------------------------------------------------------------------


def test_budget_admits_queues_refuses_and_releases():
    async def main() -> None:
        budget = Budget(memory_bytes=100, disk_bytes=10, queue_size=1, timeout_s=1.0)
        a = await budget.admit(60, 5)
        with pytest.raises(TooLargeError) as info:
            await budget.admit(101)
        assert "memory_budget_bytes" in info.value.message and info.value.field == "x"
        with pytest.raises(TooLargeError) as info:
            await budget.admit(1, 11)
        assert "disk_budget_bytes" in info.value.message
        waiting = asyncio.create_task(budget.admit(60, 5))  # does not fit beside a: waits
        await async_wait_until(lambda: budget.stats()["waiting"] == 1, message="the second admit waits")
        assert not waiting.done()
        with pytest.raises(UnavailableError):  # the queue (1) is full
            await budget.admit(60)
        a.release()
        b = await asyncio.wait_for(waiting, 1)
        assert budget.stats()["memory_in_use"] == 60 and budget.stats()["disk_in_use"] == 5
        b.release()
        b.release()  # idempotent
        assert budget.stats()["memory_in_use"] == 0
        c = await budget.admit(100)
        with pytest.raises(UnavailableError, match="within"):  # waited its timeout
            await budget.admit(1)
        c.release()
        assert budget.stats()["waiting"] == 0 and budget.stats()["memory_in_use"] == 0

    asyncio.run(main())


def test_a_waiter_that_gives_up_leaves_nothing_taken():
    async def main() -> None:
        budget = Budget(memory_bytes=10, disk_bytes=0, queue_size=4, timeout_s=5.0)
        held = await budget.admit(10)
        gave_up = asyncio.create_task(budget.admit(10))
        await async_wait_until(lambda: budget.stats()["waiting"] == 1, message="the second admit waits")
        gave_up.cancel()
        held.release()  # may be handed to the cancelled waiter: it must come back
        await asyncio.gather(gave_up, return_exceptions=True)
        await async_wait_until(lambda: budget.stats()["memory_in_use"] == 0 and budget.stats()["waiting"] == 0,
                               message=f"nothing taken: {budget.stats()}")

    asyncio.run(main())


def test_try_admit_takes_only_free_room_first_fit():
    async def main() -> None:
        budget = Budget(memory_bytes=10, disk_bytes=5, queue_size=4, timeout_s=5.0)
        first = budget.try_admit(6, 5)
        assert first is not None and budget.stats()["memory_in_use"] == 6
        assert budget.try_admit(5) is None  # no room: the caller waits through admit instead
        waiter = asyncio.create_task(budget.admit(5))
        await async_wait_until(lambda: budget.stats()["waiting"] == 1, message="the admit waits")
        small = budget.try_admit(1)  # fits beside what is in use: not queued behind the waiter that does not
        assert small is not None
        small.release()
        first.release()
        (await waiter).release()
        ticket = budget.try_admit(10, 5)
        assert ticket is not None
        ticket.release()
        assert budget.stats()["memory_in_use"] == 0 and budget.stats()["disk_in_use"] == 0

    asyncio.run(main())


# -- a server with real-size cubes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    from app.main import create_app
    from app.settings import Settings
    from core.synthetic.archive import write_sparse_cube

    try:
        from tests.conftest import _free_port, start_uvicorn, stop_uvicorn
    except ImportError:  # pragma: no cover
        from conftest import _free_port, start_uvicorn, stop_uvicorn

    cubes = tmp_path_factory.mktemp("sparse")
    cube = write_sparse_cube(cubes / "tess-s0038-2-2-cube.fits", sector=38, camera=2, ccd=2, frames=3705)
    work = tmp_path_factory.mktemp("budget-work")
    settings = Settings(cube_dirs=[str(cubes)], work_dir=work, port=_free_port(), inline_tpf_bytes=MiB,
                        stream_band_bytes=8 * MiB, memory_budget_bytes=40 * MiB, budget_queue_size=0,
                        disk_budget_bytes=200 * 10**6, workers=4, request_timeout_s=60)
    app = create_app(settings)
    server, thread = start_uvicorn(app, settings.host, settings.port)
    try:
        from core.cubes.cache import open_cube

        c = open_cube(str(cube))
        ra, dec = (float(v) for v in c.wcs.all_pix2world(1068.3, 1024.6, 0))
        yield type("Big", (), {"url": f"http://{settings.host}:{settings.port}", "cube": str(cube), "ra": ra,
                               "dec": dec, "work": work, "app": app})
    finally:
        stop_uvicorn(server, thread)


def _astrocut(server, size: int) -> str:
    return (f"{server.url}/tesscut/api/v0.1/astrocut?ra={server.ra}&dec={server.dec}&x={size}&y={size}"
            "&units=px&sector=38")


def _idle(server, timeout: float = 30.0) -> dict:
    """Wait until the server holds no budget, runs no worker and keeps no spool; its /health."""
    seen: dict = {}

    def idle() -> dict | None:
        health = httpx.get(server.url + "/health", timeout=10).json()
        spools = [p for p in os.listdir(server.work) if p.startswith("tpf-spool-")]
        busy = (health["budget"]["memory_in_use"], health["budget"]["disk_in_use"], health["pool"]["running"])
        seen.update(busy=busy, spools=spools)
        return health if busy == (0, 0, 0) and not spools else None

    return wait_until(idle, timeout=timeout, interval=0.1,
                      message=lambda: f"still held: budget/disk/workers {seen['busy']}, spools {seen['spools']}")


def test_a_streamed_tpf_is_the_engines_bytes(big_server):
    from core.tpf.cut import CutoutFactory

    r = httpx.get(_astrocut(big_server, 30), timeout=60)
    assert r.status_code == 200, r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        (info,) = zf.infolist()
        streamed = zf.read(info)
    assert info.compress_type == zipfile.ZIP_DEFLATED  # the streamed path (CRC known at the end)
    memory = CutoutFactory().cube_cut(big_server.cube, f"{big_server.ra} {big_server.dec}", 30, memory_only=True)
    assert streamed == bytes(memory.raw)
    assert len(streamed) > MiB
    health = _idle(big_server)
    assert health["budget"]["memory_bytes"] == 40 * MiB and health["budget"]["admitted"] >= 1


def test_bigger_than_the_whole_budget_is_413_naming_the_limit(big_server):
    r = httpx.get(_astrocut(big_server, 100), timeout=60)  # a 296 MB pixel spool > 200 MB of disk budget
    assert r.status_code == 413, r.text[:300]
    body = r.json()
    assert body["error"]["field"] == "x" and "disk_budget_bytes" in body["msg"]


def test_a_full_budget_is_503_and_a_client_gone_releases_everything(big_server):
    with httpx.stream("GET", _astrocut(big_server, 70), timeout=60) as held:  # a 363 MB streamed TPF
        assert held.status_code == 200
        pieces = held.iter_raw(64 * 1024)  # kept: a dropped iterator closes the response
        first = next(pieces)
        assert first[:4] == b"PK\x03\x04"
        busy = httpx.get(_astrocut(big_server, 30), timeout=60)  # no room, and no queue
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0
        assert "budget" in busy.json()["msg"]
        health = httpx.get(big_server.url + "/health", timeout=10).json()
        assert health["budget"]["memory_in_use"] > 0 and health["budget"]["disk_in_use"] > 0
    # the client went away mid-stream: budget, worker and spool are all given back
    _idle(big_server)
    again = httpx.get(_astrocut(big_server, 30), timeout=60)
    assert again.status_code == 200
    _idle(big_server)


# -- fairness ---------------------------------------------------------------------------------------


def test_a_request_that_fits_is_not_queued_behind_one_that_does_not():
    async def main() -> None:
        budget = Budget(memory_bytes=100, disk_bytes=100, queue_size=4, timeout_s=60.0)
        held = await budget.admit(60)
        large = asyncio.create_task(budget.admit(50))  # does not fit beside what is held: waits
        await asyncio.sleep(0.02)
        assert budget.stats()["waiting"] == 1
        small = await asyncio.wait_for(budget.admit(5), 10)  # fits now: admitted now
        assert not large.done()
        small.release()
        held.release()
        (await asyncio.wait_for(large, 10)).release()
        assert budget.stats()["memory_in_use"] == 0

    asyncio.run(main())


def test_when_the_first_waiter_leaves_the_next_is_let_in_at_once():
    async def main() -> None:
        budget = Budget(memory_bytes=100, disk_bytes=100, queue_size=4, timeout_s=60.0)
        held = await budget.admit(50)
        head = asyncio.create_task(budget.admit(60))  # waits for room that does not come
        await asyncio.sleep(0.02)
        nxt = asyncio.create_task(budget.admit(30))  # fits beside what is held
        third = asyncio.create_task(budget.admit(95))
        await asyncio.sleep(0.02)
        head.cancel()  # the first waiter leaves: nothing is given back, yet the next must not wait on
        ticket = await asyncio.wait_for(nxt, 10)  # well before its 60 s timeout
        third.cancel()  # a waiter that gives up is removed at once
        await asyncio.sleep(0.02)
        assert budget.stats()["waiting"] == 0
        ticket.release()
        held.release()
        assert budget.stats()["memory_in_use"] == 0

    asyncio.run(main())


def test_a_waiter_whose_client_leaves_gives_its_place_back_at_once():
    from app.budget import ClientGoneError

    async def main() -> None:
        budget = Budget(memory_bytes=10, disk_bytes=0, queue_size=1, timeout_s=60.0)
        held = await budget.admit(10)
        left = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(budget.admit(5, gone=left))
        await asyncio.sleep(0.02)
        assert budget.stats()["waiting"] == 1
        left.set_result(None)  # the client disconnected
        with pytest.raises(ClientGoneError):
            await asyncio.wait_for(waiter, 10)
        assert budget.stats()["waiting"] == 0 and budget.stats()["client_gone"] == 1
        again = asyncio.create_task(budget.admit(5))  # the place in the queue (1) is free again
        await asyncio.sleep(0.02)
        held.release()
        (await asyncio.wait_for(again, 10)).release()
        assert budget.stats()["memory_in_use"] == 0

    asyncio.run(main())


def _take_in_another_process(path: str, slot: int, memory: int, ready, release) -> None:
    from app.budget import SharedLedger

    ledger = SharedLedger(path, slot)
    assert ledger.try_take(memory, 0, 100, 100)
    ready.set()
    release.wait(30)
    ledger.give(memory, 0)


def test_server_processes_share_one_budget(tmp_path):
    import multiprocessing

    from app.budget import SharedLedger

    path = SharedLedger.create(tmp_path / "ledger", 2)
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_take_in_another_process, args=(path, 1, 70, ready, release))
    other.start()
    try:
        assert ready.wait(60)

        async def main() -> None:
            budget = Budget(100, 100, queue_size=2, timeout_s=60.0, ledger=SharedLedger(path, 0), poll_s=0.02)
            assert budget.stats()["memory_in_use"] == 70  # the host's use, seen from this process
            assert budget.try_admit(40) is None  # 70 + 40 > 100: the other process's share counts
            waiting = asyncio.create_task(budget.admit(40))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            release.set()  # the other process gives its share back: seen at the next look
            (await asyncio.wait_for(waiting, 20)).release()
            assert budget.stats()["memory_in_use"] == 0

        asyncio.run(main())
    finally:
        release.set()
        other.join(30)
    ledger = SharedLedger(path, 1)
    ledger.try_take(30, 0, 100, 100)  # a process dies holding a share ...
    ledger.clear(1)  # ... and its slot is emptied before its successor starts
    assert ledger.in_use() == (0, 0)
