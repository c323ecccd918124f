"""Making a zip's members ahead of its writer (app.readahead): bounded, admitted, stopped cleanly.

The state machine is driven with a maker that runs each member on the calling thread (every
outcome then follows from the rules, not from thread timing); the threaded paths are exercised
through ``app.streaming.zip_chunks`` with makers held at gates.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import anyio
import pytest

from app.budget import Budget
from app.planning.answers import ZipMember
from app.readahead import Made, MemberMaker
from app.streaming import zip_bytes, zip_chunks
from app.workers import WorkerPool

MiB = 1024 * 1024


def _here(fn, *args) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001
        future.set_exception(exc)
    return future


def _members(n, made, *, size=MiB, streamed=()):
    def maker(i):
        def make(cancel):
            made.append(i)
            if i in streamed:
                return iter([bytes([i]) * size])
            return bytes([i]) * size
        return ZipMember(f"m{i}.bin", make, size, streamed=i in streamed, memory_bytes=size)
    return [maker(i) for i in range(n)]


def _write_all(maker):
    out = []
    for i in range(len(maker.members)):
        got = maker.take(i)
        out.append(got.data if isinstance(got, Made) else b"".join(got))
        maker.sent(i)
    return out


def test_read_ahead_holds_at_most_its_bound_besides_the_member_being_written():
    made: list[int] = []
    maker = MemberMaker(_members(8, made), submit=_here, cancel=threading.Event(), concurrency=8,
                        readahead_bytes=2 * MiB)
    maker.fill()
    assert made == [0, 1, 2]  # member 0 under the zip's own share, two more ahead (2 MiB)
    assert maker.take(0).data == bytes([0]) * MiB
    assert made == [0, 1, 2]
    maker.sent(0)
    assert made == [0, 1, 2]  # members 1 and 2 still wait to be written: the bound is reached
    assert maker.take(1).data[:1] == b"\x01"
    maker.sent(1)
    assert made == [0, 1, 2, 3]
    rest = [maker.take(i) for i in (2,)]
    assert rest[0].data[:1] == b"\x02"
    maker.sent(2)
    assert _write_all_from(maker, 3) == [bytes([i]) * MiB for i in range(3, 8)]
    assert made == list(range(8))


def _write_all_from(maker, start):
    out = []
    for i in range(start, len(maker.members)):
        got = maker.take(i)
        out.append(got.data if isinstance(got, Made) else b"".join(got))
        maker.sent(i)
    return out


def test_members_made_ahead_take_budget_and_give_it_back_when_sent():
    budget = Budget(memory_bytes=2 * MiB, disk_bytes=0)
    made: list[int] = []
    maker = MemberMaker(_members(6, made), submit=_here, cancel=threading.Event(), budget=budget,
                        concurrency=8, readahead_bytes=64 * MiB)
    maker.fill()
    assert made == [0, 1, 2]  # two ahead: all the budget there is (member 0 is the zip's own share)
    assert budget.memory_in_use == 2 * MiB
    assert _write_all(maker) == [bytes([i]) * MiB for i in range(6)]
    assert budget.memory_in_use == 0 and budget.admitted == 5


def test_nothing_is_made_ahead_without_room_and_the_zip_still_completes():
    budget = Budget(memory_bytes=MiB, disk_bytes=0)
    other = budget.try_admit(MiB)  # another request holds the whole budget
    made: list[int] = []
    maker = MemberMaker(_members(4, made), submit=_here, cancel=threading.Event(), budget=budget,
                        concurrency=8, readahead_bytes=64 * MiB)
    maker.fill()
    assert made == [0]  # only under the zip's own share: one at a time, as before
    assert _write_all(maker) == [bytes([i]) * MiB for i in range(4)]
    assert maker.made_ahead == 0
    other.release()
    assert budget.memory_in_use == 0


def test_streamed_members_are_never_made_ahead():
    made: list[int] = []
    maker = MemberMaker(_members(4, made, streamed={1}), submit=_here, cancel=threading.Event(), concurrency=8,
                        readahead_bytes=64 * MiB)
    maker.fill()
    assert 1 not in made and {0, 2, 3} <= set(made)
    assert _write_all(maker) == [bytes([i]) * MiB for i in range(4)]


def test_a_failed_member_fails_the_zip_at_its_turn_and_close_gives_everything_back():
    budget = Budget(memory_bytes=64 * MiB, disk_bytes=0)

    def broken(cancel):
        raise RuntimeError("cube unreadable")

    members = _members(4, [])
    members[2] = ZipMember("m2.bin", broken, MiB, memory_bytes=MiB)
    maker = MemberMaker(members, submit=_here, cancel=threading.Event(), budget=budget, concurrency=8,
                        readahead_bytes=64 * MiB)
    maker.fill()
    for i in (0, 1):
        assert maker.take(i).data[:1] == bytes([i])
        maker.sent(i)
    with pytest.raises(RuntimeError, match="cube unreadable"):
        maker.take(2)
    maker.close()
    assert budget.memory_in_use == 0 and maker.cancel.is_set()


def test_zip_bytes_is_the_same_made_ahead_or_one_at_a_time():
    pool = WorkerPool(workers=1, queue_size=0, timeout_s=30, zip_concurrency=4, zip_readahead_bytes=3 * MiB)
    budget = Budget(memory_bytes=64 * MiB, disk_bytes=0)
    members = _members(7, [], size=MiB + 17)
    ahead = zip_bytes(members, pool, budget)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(ahead)) as zf:
        assert zf.namelist() == [f"m{i}.bin" for i in range(7)]
        assert all(zf.read(f"m{i}.bin") == bytes([i]) * (MiB + 17) for i in range(7))
    one_at_a_time = zip_bytes(members)
    assert len(ahead) == len(one_at_a_time)
    assert budget.memory_in_use == 0


def test_a_stream_closed_early_stops_its_makers_and_gives_every_share_back():
    budget = Budget(memory_bytes=64 * MiB, disk_bytes=0)
    release = threading.Event()
    started: list[int] = []
    cancelled: list[int] = []
    lock = threading.Lock()

    def maker(i):
        def make(cancel):
            with lock:
                started.append(i)
            if i > 0:  # held until the stream is closed: the client went away meanwhile
                while not cancel.wait(0.01):
                    if release.is_set():
                        break
                if cancel.is_set():
                    with lock:
                        cancelled.append(i)
                    return None
            return bytes([i]) * 2 * MiB
        return ZipMember(f"m{i}.bin", make, 2 * MiB, memory_bytes=2 * MiB)

    async def main():
        pool = WorkerPool(workers=2, queue_size=0, timeout_s=60, member_threads=4, zip_concurrency=3,
                          zip_readahead_bytes=64 * MiB)
        ticket = await budget.admit(2 * MiB)
        stream = zip_chunks(pool, [maker(i) for i in range(6)], ticket, budget=budget)
        with anyio.fail_after(30):
            first = await stream.__anext__()
        assert first[:4] == b"PK\x03\x04"
        deadline = time.monotonic() + 30
        while len(started) < 3 and time.monotonic() < deadline:
            await anyio.sleep(0.01)
        assert budget.memory_in_use >= 3 * 2 * MiB  # the zip's share and the members made ahead
        await stream.aclose()  # the response ended early
        assert budget.memory_in_use == 0
        with lock:
            assert sorted(cancelled) == sorted(i for i in started if i > 0)
            assert len(started) <= 4  # members not started were dropped

    anyio.run(main)
    release.set()


def test_a_streamed_zips_pieces_stay_below_the_allocators_mmap_threshold():
    """Each piece of a streamed zip, framed as an HTTP chunk, is allocated below the mmap threshold
    the server fixes (``mmap_threshold_bytes``): from the heap, reused, rather than mapped and faulted
    in afresh for every piece of a many-sector zip."""
    import zipfile
    from io import BytesIO

    from app.settings import Settings

    threshold = Settings(cube_dirs=[]).mmap_threshold_bytes
    members = [ZipMember(f"m{i}.bin", (lambda cancel, i=i: bytes([i]) * 3 * MiB), 3 * MiB, memory_bytes=3 * MiB)
               for i in range(4)]

    async def main():
        pool = WorkerPool(workers=2, queue_size=0, timeout_s=60, member_threads=2, zip_concurrency=2)
        return [chunk async for chunk in zip_chunks(pool, members)]

    pieces = anyio.run(main)
    framing = len(b"%x\r\n\r\n" % max(map(len, pieces)))
    assert max(map(len, pieces)) + framing < threshold
    with zipfile.ZipFile(BytesIO(b"".join(pieces))) as zf:
        assert zf.testzip() is None
        assert [zf.read(n)[:1] for n in zf.namelist()] == [bytes([i]) for i in range(4)]
