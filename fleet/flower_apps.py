"""The Flower apps: a `ClientApp` that is one edge device and a `ServerApp` that runs the phases.

The same two objects serve Flower's simulation engine (`analog-edge fleet`, Ray backend) and its
deployment engine (`flwr run` against a SuperLink with real SuperNodes; see docs/fleet.md): a
SuperNode tells its ClientApp which partition it holds through its node config
(`partition-id`, `num-partitions`, optionally `state-dir`). Flower carries only small task
messages (config in, JSON summary out) and, for the FedAvg baseline, model weights; latents travel
over this project's own gRPC service, never through Flower.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fleet import client_tasks
from fleet.config import FleetConfig

TASK_KEY = "task"          # ConfigRecord the ServerApp sends: {"json": ...}
RESULT_KEY = "result"      # ConfigRecord a client replies with: {"json": ...}


class FleetError(RuntimeError):
    """A phase of the fleet run failed; the message names the client(s) and the reason."""


def _partition(context: Context) -> tuple[int, int]:
    nc = context.node_config
    try:
        return int(nc["partition-id"]), int(nc["num-partitions"])
    except KeyError as exc:
        raise FleetError(f"node_config.{exc.args[0]}: missing; start the SuperNode with "
                         "--node-config 'partition-id=<i> num-partitions=<n>'") from None


def _task(msg: Message) -> dict[str, Any]:
    return json.loads(str(msg.content.config_records[TASK_KEY]["json"]))


def _reply(msg: Message, result: dict[str, Any]) -> Message:
    return Message(RecordDict({RESULT_KEY: ConfigRecord({"json": json.dumps(result, default=_jsonable)})}),
                   reply_to=msg)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


client_app = ClientApp()


@client_app.train()
def _client_train(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    if "arrays" in msg.content.array_records:           # a FedAvg round
        cfg_rec = msg.content.config_records["config"]
        fleet = FleetConfig.from_dict(json.loads(str(cfg_rec["fleet-json"])))
        arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
        names = json.loads(str(cfg_rec["array-names"]))
        new, metrics = client_tasks.fedavg_fit(fleet, pid, n, dict(zip(names, arrays)),
                                               int(cfg_rec["server-round"]))
        return Message(RecordDict({"arrays": ArrayRecord([new[k] for k in names]),
                                   "metrics": MetricRecord(metrics)}), reply_to=msg)
    task = _task(msg)
    fleet = FleetConfig.from_dict(task["fleet"])
    state_root = str(context.node_config.get("state-dir", task["state_root"]))
    return _reply(msg, client_tasks.latent_train(fleet, pid, n, task["server_address"], state_root))


@client_app.evaluate()
def _client_evaluate(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    if "arrays" in msg.content.array_records:
        cfg_rec = msg.content.config_records["config"]
        fleet = FleetConfig.from_dict(json.loads(str(cfg_rec["fleet-json"])))
        names = json.loads(str(cfg_rec["array-names"]))
        arrays = dict(zip(names, msg.content.array_records["arrays"].to_numpy_ndarrays()))
        return Message(RecordDict({"metrics": MetricRecord(client_tasks.fedavg_eval(fleet, pid, n, arrays))}),
                       reply_to=msg)
    task = _task(msg)
    fleet = FleetConfig.from_dict(task["fleet"])
    state_root = str(context.node_config.get("state-dir", task["state_root"]))
    return _reply(msg, client_tasks.latent_evaluate(fleet, pid, n, task["server_address"], state_root))


# ---- transports: how the ServerApp-side phase logic reaches the clients --------------------------
class FlowerTransport:
    """Broadcast one task to every connected SuperNode and gather the replies (with progress)."""

    def __init__(self, grid: Grid, num_clients: int, timeout_s: float = 3600.0) -> None:
        self.grid = grid
        self.num_clients = num_clients
        self.timeout_s = timeout_s
        self.node_ids = self._wait_for_nodes()

    def _wait_for_nodes(self) -> list[int]:
        deadline = time.monotonic() + self.timeout_s
        while len(ids := sorted(self.grid.get_node_ids())) < self.num_clients:
            if time.monotonic() > deadline:
                raise FleetError(f"fleet.num_clients: only {len(ids)} of {self.num_clients} nodes "
                                 f"connected within {self.timeout_s:.0f} s")
            time.sleep(0.2)
        return ids[: self.num_clients]

    def broadcast(self, message_type: str, task: dict[str, Any], desc: str) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        payload = json.dumps(task)
        msgs = [Message(RecordDict({TASK_KEY: ConfigRecord({"json": payload})}), dst_node_id=nid,
                        message_type=message_type) for nid in self.node_ids]
        pending = set(self.grid.push_messages(msgs))
        replies: list[Message] = []
        deadline = time.monotonic() + self.timeout_s
        with tqdm(total=len(pending), desc=desc, unit="client") as bar:
            while pending:
                got = list(self.grid.pull_messages(list(pending)))
                for m in got:
                    pending.discard(m.metadata.reply_to_message_id)
                    replies.append(m)
                if got:
                    bar.update(len(got))
                if pending and time.monotonic() > deadline:
                    raise FleetError(f"{desc}: {len(pending)} client(s) did not reply within {self.timeout_s:.0f} s")
                if pending and not got:
                    time.sleep(0.2)
        errors = [m.error.reason for m in replies if m.has_error()]
        if errors:
            raise FleetError(f"{desc}: {len(errors)} of {len(replies)} client(s) failed; first error: {errors[0]}")
        return [json.loads(str(m.content.config_records[RESULT_KEY]["json"])) for m in replies]


class LocalTransport:
    """Run every client's task in this process, one after another (debugging, sweeps, no Ray)."""

    def __init__(self, num_clients: int, progress: bool = False) -> None:
        self.num_clients = num_clients
        self.progress = progress      # per-client AE progress bars (noisy for many clients)

    def broadcast(self, message_type: str, task: dict[str, Any], desc: str) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        fleet = FleetConfig.from_dict(task["fleet"])
        out = []
        for pid in tqdm(range(self.num_clients), desc=desc, unit="client"):
            if message_type == "train":
                out.append(client_tasks.latent_train(fleet, pid, self.num_clients, task["server_address"],
                                                     task["state_root"], progress=self.progress))
            else:
                out.append(client_tasks.latent_evaluate(fleet, pid, self.num_clients, task["server_address"],
                                                        task["state_root"]))
        return out


# ---- ServerApps ---------------------------------------------------------------------------------
def make_server_app(main: Callable[[Grid, Context], None]) -> ServerApp:
    """A ServerApp whose main is `main(grid, context)` (the fleet runner passes a closure)."""
    app = ServerApp()
    app.main()(main)
    return app


server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    """`flwr run` entry. Run config keys: `config` (fleet TOML), `out-dir`, `mode`, `num-clients`,
    and `latent-address` / `admin-token` to use a latent service the devices can reach (on real
    devices the one this ServerApp would start listens on loopback only)."""
    from pathlib import Path

    from fleet.commands import _config_path
    from fleet.runner import run_on_grid

    rc = context.run_config
    fleet = FleetConfig.from_toml(_config_path(str(rc.get("config") or "configs/quickstart.toml")))
    overrides: dict[str, Any] = {}
    if rc.get("mode"):
        overrides["mode"] = str(rc["mode"])
    if int(rc.get("num-clients", 0) or 0):
        overrides["num_clients"] = int(rc["num-clients"])
    fleet = fleet.with_overrides(**overrides)
    out = Path(str(rc.get("out-dir", "") or f"runs/flwr-{time.strftime('%Y%m%d-%H%M%S')}"))
    address = str(rc.get("latent-address", "") or "")
    external = (address, str(rc.get("admin-token", "") or "")) if address else None
    run_on_grid(grid, fleet, out.resolve(), external)
