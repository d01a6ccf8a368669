"""Dynamic batching: inputs from concurrent requests wait in one bounded queue and run together.

One worker thread owns the model. It takes the oldest input, lets others join until the batch holds
`max_batch` inputs or the oldest has waited `max_wait_s`, and runs one forward pass. The event loop
only enqueues and awaits futures, so /health answers while a batch computes. The queue refuses new
work at once (the caller answers 429) when it holds `max_queue` inputs, or when, at the pace of
recent batches, the new inputs would wait longer than `wait_budget_s` (they would time out anyway:
computing them would only waste the capacity that answers the others in time).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

log = logging.getLogger("tunesmith.serve")


class QueueFull(Exception):
    """The queue cannot take this request's inputs; `retry_after` is a whole number of seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


class Closed(Exception):
    """The server is shutting down and takes no new work."""


class ItemError(Exception):
    """One input cannot be processed (e.g. an undecodable image); only its own request fails."""


class _Item:
    __slots__ = ("payload", "future", "enqueued")

    def __init__(self, payload: Any) -> None:
        self.payload, self.future, self.enqueued = payload, Future(), time.monotonic()


class Batcher:
    """Queue + worker thread. `run_batch(payloads) -> results` computes one batch (same order);
    `prepare(payload)` turns one input into what run_batch takes (decoding, in the worker thread) and
    may raise ItemError; `warmup()` runs once before anything else (readiness waits for it)."""

    def __init__(self, run_batch: Callable[[list], Sequence], max_batch: int, max_wait_s: float, max_queue: int,
                 prepare: Callable[[Any], Any] | None = None, warmup: Callable[[], None] | None = None,
                 observe: Callable[[int, float], None] | None = None,
                 on_depth: Callable[[int], None] | None = None, wait_budget_s: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.run_batch, self.prepare, self.warmup = run_batch, prepare, warmup
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.observe, self.on_depth, self.wait_budget_s, self.clock = observe, on_depth, wait_budget_s, clock
        self.ready = threading.Event()
        self.warmup_error: str | None = None
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.items_per_second: float | None = None  # running mean over recent batches; None until one ran

    @property
    def depth(self) -> int:
        """Inputs waiting (not yet in a forward pass)."""
        return len(self._items)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tunesmith-batcher", daemon=True)
        self._thread.start()

    def submit(self, payloads: Sequence) -> list[Future]:
        """Enqueue a request's inputs all together, or none of them."""
        with self._cond:
            if self._closing:
                raise Closed()
            wait = self.expected_wait(len(payloads))
            if len(self._items) + len(payloads) > self.max_queue or (
                    self.wait_budget_s is not None and wait is not None and wait > self.wait_budget_s):
                raise QueueFull(max(1, math.ceil(wait or 1)))
            items = [_Item(p) for p in payloads]
            self._items.extend(items)
            self._depth_changed()
            self._cond.notify()
        return [item.future for item in items]

    def expected_wait(self, more: int = 0) -> float | None:
        """Seconds until `more` new inputs would be answered, at the recent pace (None: no pace yet)."""
        if self.items_per_second is None:
            return None
        return (len(self._items) + more) / self.items_per_second

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _depth_changed(self) -> None:
        if self.on_depth is not None:
            self.on_depth(len(self._items))

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._items:
                if self._closing:
                    return None
                self._cond.wait()
            # the oldest input's wait counts from when it arrived: after a busy spell the queue runs at once
            deadline = self._items[0].enqueued + self.max_wait_s
            while len(self._items) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._depth_changed()
        # an input whose request timed out (its future was cancelled) is dropped here
        return [item for item in batch if item.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        _name_os_thread("tunesmith-batch")
        if self.warmup is not None:
            try:
                self.warmup()
            except Exception as err:  # reported by /health/ready; the server stays up to say so
                self.warmup_error = f"{type(err).__name__}: {err}"[:500]
                log.error("warm-up forward pass failed: %s", self.warmup_error)
            else:
                self.ready.set()
        else:
            self.ready.set()
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        live: list[tuple[_Item, Any]] = []
        for item in batch:
            try:
                live.append((item, self.prepare(item.payload) if self.prepare else item.payload))
            except ItemError as err:
                item.future.set_exception(err)
            except Exception as err:  # any other decoding failure is still this input's own
                item.future.set_exception(ItemError(f"{type(err).__name__}: {err}"[:300]))
        if not live:
            return
        tic = self.clock()
        try:
            results = self.run_batch([x for _, x in live])
        except Exception as err:
            if len(live) == 1:
                log.error("forward pass failed: %s: %s", type(err).__name__, err)
                live[0][0].future.set_exception(err)
            else:  # one bad input must not fail the requests batched with it: run each alone
                for item, x in live:
                    self._run_alone(item, x)
        else:
            for (item, _), result in zip(live, results):
                item.future.set_result(result)
        seconds = max(self.clock() - tic, 1e-6)
        if len(live) >= max(1, self.max_batch // 2):
            # only well-filled batches measure capacity: a lone input's pass says little about a full queue
            pace = len(live) / seconds
            self.items_per_second = pace if self.items_per_second is None else 0.8 * self.items_per_second + 0.2 * pace
        if self.observe is not None:
            self.observe(len(live), seconds)

    def _run_alone(self, item: _Item, payload: Any) -> None:
        try:
            item.future.set_result(self.run_batch([payload])[0])
        except Exception as err:
            log.error("forward pass failed for one input: %s: %s", type(err).__name__, err)
            item.future.set_exception(err)


def _name_os_thread(name: str) -> None:
    """Give the calling thread its name in the OS too (Linux: `top -H`, /proc/PID/task/*/comm show it), so the
    CPU the forward passes take can be told from the event loop's; elsewhere, nothing."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass
