"""Drive a SuperLink through Flower's Control API (HTTP since Flower 1.42), in-process.

The calls are the ones `flwr run`, `flwr ls`, `flwr stop`, `flwr log` and `flwr supernode remove` make
(flwr/cli/run/run.py, ls.py, ...): build the FAB from the app folder, StartRun, ListRuns for the status,
StopRun, StreamLogs, UnregisterNode. Calling them here instead of the `flwr` command saves a Python start
per poll and needs no connection entry in a Flower config file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunState:
    """A Flower run's status: `pending`, `starting`, `running` or `finished`; when finished, sub_status
    is `completed`, `failed` or `stopped` and details says why."""
    status: str
    sub_status: str
    details: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def __str__(self) -> str:
        text = f"{self.status}:{self.sub_status}" if self.sub_status else self.status
        return f"{text} ({self.details})" if self.details else text


class Control:
    """A Control API client for the SuperLink at ADDRESS (host:port, plain HTTP on loopback)."""

    def __init__(self, address: str) -> None:
        from flwr.supercore.control import ControlHttpClient
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

        self.client = ControlHttpClient.from_server_address(
            server_address=address, insecure=True, root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="tunesmith")])

    def start_run(self, app_dir: Path) -> int:
        """Build the FAB of the Flower App in APP_DIR (what `flwr run APP_DIR` sends) and start it."""
        from flwr.cli.build import build_fab_from_disk
        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.supercore.fab import Fab

        fab_bytes = build_fab_from_disk(Path(app_dir))
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        res = self.client.StartRun(StartRunRequest(fab=fab_to_proto(fab), override_config=user_config_to_proto({}),
                                                   federation=""))
        if not res.HasField("run_id"):
            raise RuntimeError(f"the SuperLink did not start the run{f': {res.note}' if res.HasField('note') else ''}")
        return int(res.run_id)

    def state(self, run_id: int) -> RunState:
        """The run's current status."""
        from flwr.common.serde import run_from_proto
        from flwr.proto.control_pb2 import ListRunsRequest

        res = self.client.ListRuns(ListRunsRequest(run_id=run_id))
        status = run_from_proto(res.run_dict[run_id]).status
        return RunState(status.status, status.sub_status, status.details)

    def traffic(self, run_id: int) -> dict:
        """Bytes the SuperLink counted for the run: sent to and received from the SuperNodes."""
        from flwr.common.serde import run_from_proto
        from flwr.proto.control_pb2 import ListRunsRequest

        run = run_from_proto(self.client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict[run_id])
        return {"superlink_bytes_sent": int(run.bytes_sent), "superlink_bytes_received": int(run.bytes_recv)}

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop the run (`flwr stop`)."""
        from flwr.proto.control_pb2 import StopRunRequest

        self.client.StopRun(StopRunRequest(run_id=run_id))

    def unregister_node(self, node_id: int) -> None:
        """Remove a SuperNode from the federation (`flwr supernode remove`): messages waiting for it get an
        error reply at once instead of after two missed heartbeats (60 s in Flower 1.42)."""
        from flwr.proto.control_pb2 import UnregisterNodeRequest

        self.client.UnregisterNode(UnregisterNodeRequest(node_id=node_id))

    def online_nodes(self) -> set[int]:
        """Ids of the SuperNodes the SuperLink counts as online."""
        from flwr.proto.control_pb2 import ListNodesRequest

        return {n.node_id for n in self.client.ListNodes(ListNodesRequest()).nodes_info if n.status == "online"}

    def logs(self, run_id: int) -> str:
        """The ServerApp's log of the run so far (`flwr log --show`)."""
        from flwr.proto.control_pb2 import StreamLogsRequest

        for res in self.client.StreamLogs(StreamLogsRequest(run_id=run_id, after_timestamp=0.0)):
            return str(res.log_output)
        return ""

    def close(self) -> None:
        self.client.close()
