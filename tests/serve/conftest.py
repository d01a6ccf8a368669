"""Tiny finished runs to serve, built once per test session: a text classifier and a chat model."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import build_tiny_lm, make_chats, make_rows, tiny_config


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, tiny_model):
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    root = tmp_path_factory.mktemp("serve-text")
    make_rows(160, seed=1).to_csv(root / "reviews.csv", index=False)
    cfg = tiny_config(tiny_model, root / "reviews.csv", root / "runs", epochs=3)
    cfg["eval"] = {"bootstrap_resamples": 200}
    return fine_tune(build_config(cfg)).path


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory):
    from tests.sft.test_sft import sft_config, write_jsonl
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    root = tmp_path_factory.mktemp("serve-chat")
    lm = build_tiny_lm(root / "lm")
    cfg = sft_config(lm, write_jsonl(root / "chat.jsonl", make_chats(120)), root / "runs", epochs=15)
    cfg["model"]["max_length"] = 128
    cfg["sft"]["eval_generations"] = 1
    return fine_tune(build_config(cfg)).path


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Poll until condition() holds; the timeout only decides how long a failing test takes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Gate:
    """Wraps a predictor's logits: the first call blocks until `release()`, and every call's batch
    size is recorded, so a test can pile requests up behind a busy worker deterministically."""

    def __init__(self, predictor, fail_on: str | None = None) -> None:
        self.inner, self.fail_on = predictor.logits, fail_on
        self.sizes: list[int] = []
        self.entered, self.opened = threading.Event(), threading.Event()
        predictor.logits = self

    def __call__(self, inputs, *args, **kwargs):
        self.sizes.append(len(inputs))
        self.entered.set()
        self.opened.wait(60)
        if self.fail_on is not None and self.fail_on in inputs:
            raise RuntimeError("this input breaks the model")
        return self.inner(inputs, *args, **kwargs)

    def release(self) -> None:
        self.opened.set()
