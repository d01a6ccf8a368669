"""Bytes that travel: the size of a Flower message as its transport serializes it.

Flower (1.2x+) sends a Message as a tree of content-addressed objects (Message -> RecordDict ->
ArrayRecord -> Array -> ArrayChunk), each pushed or pulled as its `deflate()` bytes (a small header
plus a protobuf/JSON body; the tensor bytes live in the chunks). The grpc connection carries exactly
these object contents (supernode/start_client_internal.py pushes `get_all_nested_objects(msg)`), so
their total is the payload of one message, whatever the runtime; gRPC framing adds a few bytes per object.
"""
from __future__ import annotations

from typing import Any


def serialized_bytes(obj: Any) -> int:
    """Bytes of every object in the tree under OBJ (a Message, RecordDict or ArrayRecord), as deflated."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(o.deflate()) for o in get_all_nested_objects(obj).values())
