"""How the ServerApp-side phase logic reaches the clients, and the task messages it sends.

A latent-pipeline task is a Flower message of type `train.latent` or `evaluate.latent` (Flower
routes `<category>.<action>` to the ClientApp function registered for that action); its content
is one ConfigRecord holding the task (`messages.LatentTask`) as JSON (plus, with alignment
"pretrained", an ArrayRecord of the server's pretrained weights in the train message: the one way
they reach a device, in a simulation as on real devices), and the reply carries the client's
record as JSON (`messages.ClientUpload` / `messages.ClientEvaluation`), checked field by field
when read.
FedAvg rounds use Flower's default `train` / `evaluate` types (sent by the FedAvg strategy).
Two transports deliver the same tasks: `FlowerTransport` over a Flower `Grid` (simulation or
deployment) and `LocalTransport` in this process, one client after another.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Protocol

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from tqdm.auto import tqdm

from common.errors import ContractError
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.run import client_tasks
from fleet.run.messages import ClientEvaluation, ClientUpload, LatentTask

LATENT_ACTION = "latent"                      # the ClientApp action of the latent pipeline
LATENT_TRAIN = f"train.{LATENT_ACTION}"       # train the AE, upload latents
LATENT_EVALUATE = f"evaluate.{LATENT_ACTION}"  # encode the local test split, Classify
TASK_KEY = "task"          # ConfigRecord the ServerApp sends: {"json": ...}
RESULT_KEY = "result"      # ConfigRecord a client replies with: {"json": ...}
INIT_KEY = "init"          # ArrayRecord of the pretrained AE weights, in the train message
# When set, the ServerApp's progress bars go to this file (the simulation relays it to the terminal:
# Flower captures the ServerApp's own stdout/stderr into the run log).
PROGRESS_ENV = "ANALOG_EDGE_PROGRESS_FILE"


Reply = ClientUpload | ClientEvaluation
REPLY_TYPES: dict[str, type[ClientUpload] | type[ClientEvaluation]] = {
    LATENT_TRAIN: ClientUpload, LATENT_EVALUATE: ClientEvaluation}


def task_content(task: LatentTask, init: ArrayRecord | None = None) -> RecordDict:
    """The content of a latent task message (with the pretrained weights `init`, if any)."""
    records: dict[str, Any] = {TASK_KEY: ConfigRecord({"json": task.to_json()})}
    if init is not None:
        records[INIT_KEY] = init
    return RecordDict(records)


def read_task(msg: Message) -> LatentTask:
    """The task a latent message carries (ContractError naming the field when it is garbled)."""
    return LatentTask.from_json(_json_of(msg, TASK_KEY), "task")


def _json_of(msg: Message, key: str) -> str:
    record = msg.content.config_records.get(key)
    if record is None or "json" not in record:
        raise ContractError(f"{key}: missing from the {msg.metadata.message_type!r} message")
    return str(record["json"])


def init_record(state: dict[str, Any]) -> ArrayRecord:
    """The pretrained weights (a torch state dict) as the ArrayRecord the train message carries."""
    return ArrayRecord(state)


def record_wire_bytes(record: ArrayRecord) -> int:
    """The bytes a record crosses the wire as: Flower 1.41 sends a message as content-addressed
    objects (the record, one per array, one per array chunk), and this is the sum of their
    serialized sizes: the float32 payload plus its headers (gRPC/TLS framing not included)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(record).values())


def read_init(msg: Message) -> client_tasks.InitWeights | None:
    """The pretrained weights a train message carries, and what they cost to receive; None if none."""
    record = msg.content.array_records.get(INIT_KEY)
    return unpack_init(record) if record is not None else None


def unpack_init(record: ArrayRecord) -> client_tasks.InitWeights:
    return client_tasks.InitWeights(record.to_torch_state_dict(), record_wire_bytes(record))


def reply(msg: Message, result: Reply) -> Message:
    """A client's reply to a latent task: its record as JSON."""
    return Message(RecordDict({RESULT_KEY: ConfigRecord({"json": json.dumps(result.to_dict(), default=_jsonable)})}),
                   reply_to=msg)


def read_reply(msg: Message, message_type: str) -> Reply:
    """The record a client replied to a `message_type` task with, checked field by field."""
    cls = REPLY_TYPES[message_type]
    return cls.from_json(_json_of(msg, RESULT_KEY), cls.WHAT)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class _nothing:
    """A no-op context manager (no progress file)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class Transport(Protocol):
    """Send one latent task to every client and return their replies."""

    def broadcast(self, message_type: str, task: LatentTask, desc: str,
                  init: ArrayRecord | None = None) -> list[Reply]: ...


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

    def broadcast(self, message_type: str, task: LatentTask, desc: str,
                  init: ArrayRecord | None = None) -> list[Reply]:
        msgs = [Message(task_content(task, init), dst_node_id=nid, message_type=message_type)
                for nid in self.node_ids]
        pending = set(self.grid.push_messages(msgs))
        replies: list[Message] = []
        deadline = time.monotonic() + self.timeout_s
        sink = open(os.environ[PROGRESS_ENV], "a", buffering=1) if os.environ.get(PROGRESS_ENV) else None
        with sink or _nothing(), tqdm(total=len(pending), desc=desc, unit="client", file=sink) as bar:
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
        errors = [client_error(m.error.reason) for m in replies if m.has_error()]
        if errors:
            raise FleetError(f"{desc}: {len(errors)} of {len(replies)} client(s) failed; first error: {errors[0]}")
        return [read_reply(m, message_type) for m in replies]


def client_error(reason: str) -> str:
    """A ClientApp's exception as `Name: message` (Flower reports "<class 'pkg.Name'>:<'message'>")."""
    m = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>:<'(.*)'>", reason.strip(), flags=re.S)
    return f"{m.group(1)}: {m.group(2)}" if m else reason


class LocalTransport:
    """Run every client's task in this process, one after another (debugging, sweeps, no Ray)."""

    def __init__(self, num_clients: int, progress: bool = False) -> None:
        self.num_clients = num_clients
        self.progress = progress      # per-client AE progress bars (noisy for many clients)

    def broadcast(self, message_type: str, task: LatentTask, desc: str,
                  init: ArrayRecord | None = None) -> list[Reply]:
        if message_type not in (LATENT_TRAIN, LATENT_EVALUATE):
            raise ValueError(f"message_type: got {message_type!r}, must be {LATENT_TRAIN} or {LATENT_EVALUATE}")
        if task.state_root is None:
            raise FleetError("task.state_root: missing; clients in this process keep their state under it")
        fleet = FleetConfig.from_dict(task.fleet)
        out: list[Reply] = []
        for pid in tqdm(range(self.num_clients), desc=desc, unit="client"):
            # every client unpacks its own copy of the record, as a device does with its message
            if message_type == LATENT_TRAIN:
                out.append(client_tasks.latent_train(fleet, pid, self.num_clients, task, task.state_root,
                                                     init=unpack_init(init) if init is not None else None,
                                                     progress=self.progress))
            else:
                out.append(client_tasks.latent_evaluate(fleet, pid, self.num_clients, task.server_address,
                                                        task.state_root, task.latent_ca_pem))
        return out
