"""The bytes a federated run reports are what Flower's transport pushes for a message."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from tunesmith.federate.apps import _from_record, _to_record  # noqa: E402
from tunesmith.federate.meter import serialized_bytes  # noqa: E402


@pytest.fixture(autouse=True)
def identity():
    """A Message takes its run id from the task identity a runtime sets; set one as run_simulation does."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = before


def _message(state: dict[str, np.ndarray]):
    from flwr.app import ConfigRecord, Message, RecordDict

    content = RecordDict({"arrays": _to_record(state), "config": ConfigRecord({"local-epochs": 1})})
    return Message(content=content, dst_node_id=7, message_type="train")


def test_measured_bytes_equal_what_flower_pushes_and_carry_the_tensors():
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents, push_objects

    rng = np.random.default_rng(0)
    state = {"lora_A": rng.normal(size=(8, 64)).astype(np.float32),
             "lora_B": rng.normal(size=(64, 8)).astype(np.float32),
             "head.weight": rng.normal(size=(3, 64)).astype(np.float32)}
    msg = _message(state)
    pushed: dict[str, bytes] = {}
    # the function a SuperNode uses to send a reply (supernode/start_client_internal.py), with a recording sink
    push_objects(get_all_nested_objects(msg), lambda oid, content: pushed.__setitem__(oid, content), keep_objects=True)
    assert serialized_bytes(msg) == sum(len(c) for c in pushed.values())
    tensors = sum(a.nbytes for a in state.values())
    assert tensors < serialized_bytes(msg) < tensors + 4096  # the tensors plus small headers
    # and those bytes are the whole message: it inflates back to the same tensors
    back = inflate_object_from_contents(msg.object_id, dict(pushed), keep_object_contents=True)
    got = _from_record(back.content["arrays"])
    assert sorted(got) == sorted(state) and all(np.array_equal(got[k], state[k]) for k in state)


def test_an_adapter_costs_a_fraction_of_full_weights():
    rng = np.random.default_rng(1)
    full = {f"layer{i}.weight": rng.normal(size=(128, 128)).astype(np.float32) for i in range(6)}
    adapter = {f"layer{i}.lora_{ab}": rng.normal(size=(4, 128)).astype(np.float32) for i in range(6) for ab in "AB"}
    assert serialized_bytes(_message(adapter)) < 0.1 * serialized_bytes(_message(full))
