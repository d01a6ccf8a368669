"""The batcher alone (no model, no HTTP): results in order, per-item preparation errors, shedding by
count and by expected wait, drain on close."""
from __future__ import annotations

import threading

import pytest

from tests.serve.conftest import wait_until
from tunesmith.serve.batcher import Batcher, Closed, ItemError, QueueFull


class Clock:
    """Advances one second per forward pass, so the measured pace is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_results_keep_their_order_and_a_bad_item_fails_alone():
    def prepare(x):
        if x < 0:
            raise ItemError(f"{x} is negative")
        return x

    b = Batcher(lambda xs: [x * 10 for x in xs], max_batch=8, max_wait_s=0.0, max_queue=16, prepare=prepare)
    b.start()
    futures = b.submit([1, -2, 3])
    assert futures[0].result(10) == 10 and futures[2].result(10) == 30
    with pytest.raises(ItemError, match="-2 is negative"):
        futures[1].result(10)
    b.close(10)
    with pytest.raises(Closed):
        b.submit([4])


def test_sheds_when_the_expected_wait_passes_the_budget():
    clock = Clock()
    sizes = []
    hold, held = threading.Event(), threading.Event()

    def run(xs):
        sizes.append(len(xs))
        if xs == ["hold"]:
            held.set()
            hold.wait(10)
        clock.now += 1.0  # every pass takes one (fake) second
        return xs

    b = Batcher(run, max_batch=4, max_wait_s=0.0, max_queue=100, wait_budget_s=2.5, clock=clock)
    assert b.expected_wait(50) is None  # no pace yet: only the count bound applies
    b.start()
    [f.result(10) for f in b.submit([1, 2, 3, 4])]  # a full batch in one second: 4 inputs per second
    assert b.items_per_second == 4.0
    b.submit([5])[0].result(10)
    assert b.items_per_second == 4.0  # a lone input's pass does not count as capacity
    b.submit(["hold"])  # keeps the worker busy while the queue fills
    wait_until(held.is_set, "the worker to be busy")
    b.submit(list(range(10)))  # 10 at 4/s: 2.5 s, just within the budget
    with pytest.raises(QueueFull) as full:
        b.submit([11])  # 2.75 s
    assert full.value.retry_after == 3
    hold.set()
    b.close(10)
    assert sizes == [4, 1, 1, 4, 4, 2]


def test_count_bound_and_drain_on_close():
    b = Batcher(lambda xs: xs, max_batch=2, max_wait_s=0.0, max_queue=3)
    futures = b.submit([1, 2, 3])  # not started: everything waits
    with pytest.raises(QueueFull) as full:
        b.submit([4])
    assert full.value.retry_after == 1
    b.start()
    b.close(10)  # finishes what was queued before stopping
    assert [f.result(0) for f in futures] == [1, 2, 3]
