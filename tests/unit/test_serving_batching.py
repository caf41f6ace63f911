"""The dynamic batcher: batches concurrent requests, adds no delay when idle, reports errors."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from visionyard.errors import InferenceError, InvalidInputError
from visionyard.serving.batching import BatchConfig, Batcher, Outputs, Work
from visionyard.serving.threads import HELD


def _slow_double(sizes: list[int], delay: float = 0.05):  # type: ignore[no-untyped-def]
    def run(tensor: np.ndarray) -> Outputs:
        sizes.append(len(tensor))
        time.sleep(delay)
        return {"y": tensor * 2}

    return run


def test_concurrent_requests_are_batched_and_split_back() -> None:
    async def main() -> tuple[list[int], list[np.ndarray]]:
        sizes: list[int] = []
        batcher = Batcher(_slow_double(sizes), BatchConfig(max_batch_size=8, workers=1))
        batcher.start()
        tensors = [np.full((1 + i % 2, 2), i, np.float32) for i in range(9)]
        results = await asyncio.gather(*(batcher.submit(Work.of(t)) for t in tensors))
        await batcher.close()
        return sizes, [r.value["y"] for r in results]

    sizes, outputs = asyncio.run(main())
    assert sum(sizes) == 13
    assert max(sizes) > 1
    assert all(size <= 8 for size in sizes)
    for i, out in enumerate(outputs):
        assert out.shape == (1 + i % 2, 2)
        assert np.all(out == 2 * i)


def test_no_delay_when_idle() -> None:
    async def main() -> float:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(max_queue_delay_s=2.0))
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(Work.of(np.zeros((1, 2), np.float32)))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.5


def test_waits_for_more_only_while_another_worker_is_busy() -> None:
    async def main() -> list[int]:
        sizes: list[int] = []
        config = BatchConfig(max_batch_size=4, max_queue_delay_s=0.15, workers=2)
        batcher = Batcher(_slow_double(sizes, 0.3), config)
        batcher.start()
        first = asyncio.create_task(batcher.submit(Work.of(np.zeros((1, 1)))))
        await asyncio.sleep(0.02)  # worker 1 busy; worker 2 takes the next and waits a little
        rest = [asyncio.create_task(batcher.submit(Work.of(np.zeros((1, 1))))) for _ in range(1)]
        await asyncio.sleep(0.01)
        rest += [asyncio.create_task(batcher.submit(Work.of(np.zeros((1, 1))))) for _ in range(2)]
        await asyncio.gather(first, *rest)
        await batcher.close()
        return sizes

    assert asyncio.run(main()) == [1, 3]


def test_errors_reach_every_caller_of_the_batch() -> None:
    def fail(tensor: np.ndarray) -> Outputs:
        raise InferenceError("boom")

    async def main() -> list[BaseException | object]:
        batcher = Batcher(fail, BatchConfig())
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(Work.of(np.zeros((1, 1)))) for _ in range(3)), return_exceptions=True
        )
        await batcher.close()
        return list(results)

    results = asyncio.run(main())
    assert all(isinstance(r, InferenceError) for r in results)


def test_closed_batcher_refuses_work() -> None:
    async def main() -> None:
        batcher = Batcher(_slow_double([]), BatchConfig())
        batcher.start()
        await batcher.close()
        await batcher.submit(Work.of(np.zeros((1, 1))))

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(main())


def test_a_failing_request_does_not_fail_its_batch() -> None:
    """prepare (decoding) and finish (output decoding) errors reach their own caller only."""

    def prepare(i: int) -> tuple[np.ndarray, int]:
        if i == 1:
            raise InvalidInputError("image 0 is not an image")
        return np.full((1, 1), i, np.float32), i

    def finish(outputs: Outputs, i: int) -> float:
        if i == 2:
            raise ValueError("cannot decode")
        return float(outputs["y"][0, 0])

    async def main() -> tuple[list[object], list[int], set[str]]:
        sizes: list[int] = []
        threads: set[str] = set()
        batcher = Batcher(_slow_double(sizes, 0.1), BatchConfig(max_batch_size=8, workers=1))
        batcher.start()

        def work(i: int) -> Work:
            def traced() -> tuple[np.ndarray, int]:
                threads.add(threading.current_thread().name)
                return prepare(i)

            return Work(1, traced, finish)

        blocker = asyncio.create_task(batcher.submit(work(0)))
        await asyncio.sleep(0.03)  # the worker is busy: the next four queue up as one batch
        results = await asyncio.gather(
            *(batcher.submit(work(i)) for i in (1, 2, 3, 4)), return_exceptions=True
        )
        await blocker
        await batcher.close()
        values = [r if isinstance(r, BaseException) else r.value for r in results]
        return values, sizes, threads

    values, sizes, threads = asyncio.run(main())
    assert isinstance(values[0], InvalidInputError)
    assert isinstance(values[1], ValueError)
    assert values[2:] == [6.0, 8.0]
    assert sizes == [1, 3]  # the bad image left the batch; the others ran together
    assert threads == {"vy-infer-0"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OS thread names: Linux")
def test_workers_are_named_for_top_and_ps() -> None:
    async def main() -> set[str]:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=2), name="vy-infer-m")
        batcher.start()
        await batcher.submit(Work.of(np.zeros((1, 1))))
        names = {p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")}
        await batcher.close()
        return names

    assert {"vy-infer-m-0", "vy-infer-m-1"} <= asyncio.run(main())


def test_callers_that_went_away_do_not_stop_the_workers() -> None:
    """A queue holding only cancelled requests is empty, not closed: the worker waits on."""

    async def main() -> np.ndarray:
        batcher = Batcher(_slow_double([], 0.2), BatchConfig(max_batch_size=2, workers=1))
        batcher.start()
        blocker = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        await asyncio.sleep(0.05)  # the only worker is busy; these three queue up
        gone = [asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1))))) for _ in range(3)]
        await asyncio.sleep(0.01)
        for task in gone:
            task.cancel()  # their callers time out / disconnect
        await blocker
        await asyncio.sleep(0.05)  # the worker has met the cancelled requests
        result = await asyncio.wait_for(batcher.submit(Work.of(np.full((1, 1), 3.0))), 5)
        await batcher.close()
        return np.asarray(result.value["y"])

    assert asyncio.run(main()).tolist() == [[6.0]]


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    calls: list[int] = []

    def flaky_observer(size: int) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("a bug after inference")

    async def main() -> tuple[object, float]:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=1), on_batch=flaky_observer)
        batcher.start()
        first = await asyncio.gather(
            batcher.submit(Work.of(np.ones((1, 1)))), return_exceptions=True
        )
        second = await asyncio.wait_for(batcher.submit(Work.of(np.ones((1, 1)))), 5)
        await batcher.close()
        return first[0], float(second.value["y"][0, 0])

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError)
    assert second == 2.0


def test_an_idle_worker_is_woken_while_another_waits_out_its_delay() -> None:
    """A request that does not fit the delaying worker's batch goes to the idle worker."""

    async def main() -> float:
        config = BatchConfig(max_batch_size=2, max_queue_delay_s=0.5, workers=2)
        batcher = Batcher(_slow_double([], 0.05), config)
        batcher.start()
        busy = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        await asyncio.sleep(0.01)  # worker A runs; worker B takes the next one and waits
        waiting = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        await busy  # A is idle now, B still waits for a second row
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await batcher.submit(Work.of(np.ones((2, 1))))  # two rows: does not fit B's batch
        elapsed = time.perf_counter() - started
        await waiting
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.3


def test_results_that_asyncio_refuses_still_settle_the_whole_batch() -> None:
    def prepare() -> tuple[np.ndarray, None]:
        raise StopIteration  # an asyncio future refuses this exception type

    async def main() -> list[object]:
        batcher = Batcher(_slow_double([], 0.05), BatchConfig(max_batch_size=8, workers=1))
        batcher.start()
        blocker = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        await asyncio.sleep(0.01)
        bad = batcher.submit(Work(1, prepare, lambda outputs, _: outputs))
        good = batcher.submit(Work.of(np.full((1, 1), 2.0)))
        results = await asyncio.wait_for(asyncio.gather(bad, good, return_exceptions=True), 5)
        await blocker
        await batcher.close()
        return list(results)

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError)
    assert "StopIteration" in str(bad)
    assert not isinstance(good, BaseException)
    assert good.value["y"].tolist() == [[4.0]]  # type: ignore[attr-defined]


def test_close_finishes_what_is_queued() -> None:
    async def main() -> list[float]:
        batcher = Batcher(_slow_double([], 0.05), BatchConfig(max_batch_size=1, workers=1))
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(Work.of(np.full((1, 1), i)))) for i in range(4)]
        await asyncio.sleep(0.01)
        await batcher.close()
        return [float(t.result().value["y"][0, 0]) for t in tasks]

    assert asyncio.run(main()) == [0.0, 2.0, 4.0, 6.0]


def _held_until(event: threading.Event) -> None:
    """Block until the test releases ``event``. The bound is long: a short one (it was 5 s)
    expired on a loaded CI machine, and the held request then finished early and the test
    read a wrong order rather than a stall."""
    if not event.wait(120):
        raise AssertionError("the test never released this request")


async def _only_the_held_batch_left() -> None:
    """A worker lets go of its batch just after handing the answer over: on a loaded machine the
    held batch's inference could start before that and see two batches (a CI flake)."""
    for _ in range(5000):
        if HELD.count == 1:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{HELD.count} batches still held")


def _recorder(label: str, calls: list[str], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def run(tensor: np.ndarray) -> Outputs:
        calls.append(label)
        if gate is not None:
            _held_until(gate)
        return {"y": tensor * 2}

    return run


def test_a_lone_request_runs_on_the_wide_session() -> None:
    async def main() -> tuple[list[str], float]:
        calls: list[str] = []
        batcher = Batcher(
            _recorder("narrow", calls), BatchConfig(), run_alone=_recorder("wide", calls)
        )
        batcher.start()
        result = await batcher.submit(Work.of(np.ones((1, 1))))
        await batcher.close()
        return calls, float(result.value["y"][0, 0])

    assert asyncio.run(main()) == (["wide"], 2.0)


def test_a_batch_runs_narrow_while_another_worker_holds_one() -> None:
    """Worker A holds a request (still decoding) when worker B infers: B runs narrow; A, alone
    by then, runs wide."""
    decoding = threading.Event()

    preparing = threading.Event()

    def slow_prepare() -> tuple[np.ndarray, None]:
        preparing.set()
        _held_until(decoding)
        return np.ones((1, 1)), None

    async def main() -> list[str]:
        calls: list[str] = []
        config = BatchConfig(workers=2)
        batcher = Batcher(_recorder("narrow", calls), config, run_alone=_recorder("wide", calls))
        batcher.start()
        held = asyncio.create_task(batcher.submit(Work(1, slow_prepare, lambda out, _: out)))
        while not preparing.is_set():  # worker A holds it (depth alone is 0 before the task runs)
            await asyncio.sleep(0.001)
        await batcher.submit(Work.of(np.ones((1, 1))))
        await _only_the_held_batch_left()
        decoding.set()
        await held
        await batcher.close()
        return calls

    assert asyncio.run(main()) == ["narrow", "wide"]


def test_a_batch_runs_narrow_when_requests_wait_behind_it() -> None:
    decoding = threading.Event()

    preparing = threading.Event()

    def slow_prepare() -> tuple[np.ndarray, None]:
        preparing.set()
        _held_until(decoding)
        return np.ones((1, 1)), None

    async def main() -> list[str]:
        calls: list[str] = []
        config = BatchConfig(max_batch_size=1, workers=1)
        batcher = Batcher(_recorder("narrow", calls), config, run_alone=_recorder("wide", calls))
        batcher.start()
        first = asyncio.create_task(batcher.submit(Work(1, slow_prepare, lambda out, _: out)))
        while not preparing.is_set():
            await asyncio.sleep(0.001)
        second = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        while not batcher.depth:  # the second request waits behind the first
            await asyncio.sleep(0.001)
        decoding.set()
        await asyncio.gather(first, second)
        await batcher.close()
        return calls

    assert asyncio.run(main()) == ["narrow", "wide"]


def test_no_batch_starts_while_one_runs_on_every_core() -> None:
    """Requests that arrive during a wide run wait for it, then are served (narrow or wide)."""
    gate = threading.Event()

    async def main() -> tuple[list[str], int]:
        calls: list[str] = []
        config = BatchConfig(workers=2)
        batcher = Batcher(
            _recorder("narrow", calls), config, run_alone=_recorder("wide", calls, gate)
        )
        batcher.start()
        first = asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1)))))
        while not calls:  # the wide run has started and is held by the gate
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.submit(Work.of(np.ones((1, 1))))) for _ in range(3)]
        await asyncio.sleep(0.05)
        during = len(calls)
        gate.set()
        await asyncio.gather(first, *rest)
        await batcher.close()
        return calls, during

    calls, during = asyncio.run(main())
    assert during == 1  # nothing else ran while the wide batch held every core
    assert calls[0] == "wide"
    assert len(calls) >= 2


def test_a_batch_runs_narrow_while_another_models_worker_holds_one() -> None:
    """Two versions served side by side (a canary, a second model): while the production
    version's worker holds a batch, the candidate's lone request must not take every core too."""
    decoding = threading.Event()
    preparing = threading.Event()

    def slow_prepare() -> tuple[np.ndarray, None]:
        preparing.set()
        _held_until(decoding)
        return np.ones((1, 1)), None

    async def main() -> tuple[list[str], list[str]]:
        first: list[str] = []
        second: list[str] = []
        production = Batcher(
            _recorder("narrow", first), BatchConfig(), run_alone=_recorder("wide", first)
        )
        candidate = Batcher(
            _recorder("narrow", second), BatchConfig(), run_alone=_recorder("wide", second)
        )
        production.start()
        candidate.start()
        held = asyncio.create_task(production.submit(Work(1, slow_prepare, lambda out, _: out)))
        while not preparing.is_set():
            await asyncio.sleep(0.001)
        await candidate.submit(Work.of(np.ones((1, 1))))
        await _only_the_held_batch_left()
        decoding.set()
        await held
        await production.close()
        await candidate.close()
        return first, second

    assert asyncio.run(main()) == (["wide"], ["narrow"])


def test_after_work_runs_once_the_caller_has_its_answer_and_settled_waits_for_it() -> None:
    """``after`` (monitoring) runs on the worker only once the answers are handed over: here it
    waits until the caller has seen its answer, which would never happen if it ran before."""
    answered = threading.Event()
    ran: list[str] = []

    def after() -> None:
        assert answered.wait(5), "the caller never got its answer before the after-work"
        time.sleep(0.1)
        ran.append("after")

    async def main() -> list[str]:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=1))
        batcher.start()
        work = Work(1, lambda: (np.ones((1, 1)), None), lambda out, _: out["y"], after)
        value = (await batcher.submit(work)).value
        assert float(value[0, 0]) == 2.0
        answered.set()
        seen_before = list(ran)
        await batcher.settled()
        seen = [*seen_before, "settled", *ran]
        await batcher.close()
        return seen

    assert asyncio.run(main()) == ["settled", "after"]  # settled waited for the after-work


def test_failing_after_work_is_logged_and_the_worker_goes_on() -> None:
    def broken() -> None:
        raise RuntimeError("a bug in monitoring")

    async def main() -> list[float]:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=1))
        batcher.start()
        first = Work(1, lambda: (np.ones((1, 1)), None), lambda out, _: out["y"], broken)
        answers = [(await batcher.submit(first)).value, (await batcher.submit(first)).value]
        await batcher.settled()
        await batcher.close()
        return [float(a[0, 0]) for a in answers]

    assert asyncio.run(main()) == [2.0, 2.0]


def test_with_nothing_queued_the_after_work_waits_for_the_callers_step() -> None:
    """The event loop needs the GIL to send an answer: a worker with nothing else to do lets
    the caller's step run first (here it records itself), then does the after-work."""
    order: list[str] = []

    async def main() -> None:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=1))
        batcher.start()
        for _ in range(5):
            work = Work(
                1,
                lambda: (np.ones((1, 1)), None),
                lambda out, _: out,
                lambda: order.append("after"),
            )
            await batcher.submit(work)
            order.append("caller")
            await batcher.settled()
        await batcher.close()

    asyncio.run(main())
    assert order == ["caller", "after"] * 5


def test_under_load_the_after_work_does_not_wait_for_the_event_loop() -> None:
    """Only a lone request's worker waits for the loop to send the answer first; with another
    worker holding a batch (load), waiting would idle a worker the queue needs."""
    from visionyard.serving.batching import Settled, _Item

    async def main() -> tuple[bool, bool]:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(workers=2))
        batcher.start()
        loop = asyncio.get_running_loop()
        work = Work(1, lambda: (np.ones((1, 1)), None), lambda out, _: out, lambda: None)

        def answered_event(busy: int) -> bool:
            item = _Item(work, loop.create_future(), 0.0)
            batcher._busy = busy
            pending = batcher._deliver_batch([item], Settled())
            assert pending is not None
            batcher._run_after((pending[0], None))
            return pending[1] is not None

        found = (
            await asyncio.to_thread(answered_event, 1),
            await asyncio.to_thread(answered_event, 2),
        )
        batcher._busy = 0
        await batcher.close()
        return found

    held = HELD.count
    HELD.add(1 - held)  # this worker's batch only
    try:
        assert asyncio.run(main()) == (True, False)
    finally:
        HELD.add(held - 1)
