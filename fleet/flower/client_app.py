"""The Flower `ClientApp`: one edge device, for the simulation and the deployment engine alike.

A SuperNode tells its ClientApp which partition it holds through its node config
(`partition-id`, `num-partitions`; `state-dir`, the folder it keeps its state in, which a real
device must name; optionally `data-path` / `anchor-path`, where this device keeps its copies of the
dataset and the public anchor set when not where the fleet config says). Everything else comes in
the message: the pretrained weights as an ArrayRecord, the public set's SHA-256 (checked against
this device's copy before training), the latent service's address and CA. Work is routed by message type:
`train.latent` / `evaluate.latent` run the latent pipeline (latents travel over this project's
own gRPC service, Flower carries only the task and the JSON summary); Flower's default `train` /
`evaluate` types, which the FedAvg strategy sends, run a FedAvg round on the model weights.
"""
from __future__ import annotations

import copy

import json
from typing import Any

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.run import LATENT_ACTION, LatentTask, client_tasks, read_init, read_task, reply

client_app = ClientApp()


def _partition(context: Context) -> tuple[int, int]:
    nc = context.node_config
    try:
        return int(nc["partition-id"]), int(nc["num-partitions"])
    except KeyError as exc:
        raise FleetError(f"node_config.{exc.args[0]}: missing; start the SuperNode with "
                         "--node-config 'partition-id=<i> num-partitions=<n>'") from None


NODE_PATHS = {"data-path": ("data", "path"), "anchor-path": ("public", "path")}   # node config -> [edge.TABLE] key


def _latent_task(msg: Message, context: Context) -> tuple[LatentTask, FleetConfig, str]:
    """The task, the fleet config as this device sees it (its own data paths), its state folder."""
    task = read_task(msg)
    nc = context.node_config
    state_root = nc.get("state-dir") or task.state_root
    if not state_root:
        raise FleetError("node_config.state-dir: missing; a device keeps its state in a folder of its own: start "
                         "the SuperNode with --node-config \"partition-id=<i> num-partitions=<n> state-dir='<folder>'\"")
    fleet = FleetConfig.from_dict(task.fleet)
    edge = copy.deepcopy(fleet.edge)
    for key, (table, edge_key) in NODE_PATHS.items():
        if nc.get(key):
            edge.setdefault(table, {})[edge_key] = str(nc[key])
    if edge != fleet.edge:
        fleet = fleet.with_overrides(edge=edge)
    return task, fleet, str(state_root)


def _fedavg_inputs(msg: Message) -> tuple[FleetConfig, list[str], dict[str, Any]]:
    cfg_rec = msg.content.config_records["config"]
    fleet = FleetConfig.from_dict(json.loads(str(cfg_rec["fleet-json"])))
    names = json.loads(str(cfg_rec["array-names"]))
    arrays = dict(zip(names, msg.content.array_records["arrays"].to_numpy_ndarrays()))
    return fleet, names, arrays


@client_app.train(LATENT_ACTION)
def _latent_train(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    task, fleet, state_root = _latent_task(msg, context)
    return reply(msg, client_tasks.latent_train(fleet, pid, n, task, state_root, init=read_init(msg)))


@client_app.evaluate(LATENT_ACTION)
def _latent_evaluate(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    task, fleet, state_root = _latent_task(msg, context)
    return reply(msg, client_tasks.latent_evaluate(fleet, pid, n, task.server_address, state_root,
                                                   task.latent_ca_pem))


@client_app.train()
def _fedavg_train(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    fleet, names, arrays = _fedavg_inputs(msg)
    server_round = int(msg.content.config_records["config"]["server-round"])
    new, metrics = client_tasks.fedavg_fit(fleet, pid, n, arrays, server_round)
    return Message(RecordDict({"arrays": ArrayRecord([new[k] for k in names]),
                               "metrics": MetricRecord(metrics)}), reply_to=msg)


@client_app.evaluate()
def _fedavg_evaluate(msg: Message, context: Context) -> Message:
    pid, n = _partition(context)
    fleet, _, arrays = _fedavg_inputs(msg)
    return Message(RecordDict({"metrics": MetricRecord(client_tasks.fedavg_eval(fleet, pid, n, arrays))}),
                   reply_to=msg)
