"""What a device gets from the server, through the ClientApp as a SuperNode runs it: the public set's
SHA-256 (checked against the device's own copy before any training; a mismatch is one named line),
the pretrained weights in the train message (their bytes as they cross the wire), and no path of
the server's: a real device must name its own state folder."""
import numpy as np
import pytest
import torch
from flwr.app import Context, Message, RecordDict

from edge_client.runner import public_anchor_images
from fleet.flower.client_app import client_app
from fleet.run.client_tasks import PublicSetMismatch
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.run.messages import LatentTask
from fleet.run.phases import device_task
from fleet.run.transport import LATENT_TRAIN, client_error, init_record, read_init, record_wire_bytes, task_content


@pytest.fixture(autouse=True)
def _in_a_run(monkeypatch):
    """A message is made inside a run (Flower's TaskIdentity names it); here, run 1 on node 0."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 0)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _fleet(**over) -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "device", "dataset": "digits", "num_clients": 2, "seed": 0, "backend": "local",
                  "digital": True, **over},
        "alignment": {"init": "shared_init", "anchors": True, "public_set": 100},
        "edge": {"model": {"latent_dim": 8, "autoencoder": "mlp"}, "wire": {"bits": 8}, "training": {"epochs": 1}}})


def _deliver(task: LatentTask, node_config: dict, init=None) -> Message:
    """The train message as the device's ClientApp receives it."""
    msg = Message(task_content(task, init), dst_node_id=1, message_type=LATENT_TRAIN)
    ctx = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})
    return client_app(msg, ctx)


def test_a_device_with_another_public_set_fails_before_training_with_one_named_line(tmp_path):
    fleet = _fleet()
    # the server: a latent service that is never reached (the check comes first), no state root
    task = device_task(fleet, "127.0.0.1:1", None)
    public = public_anchor_images(fleet.edge_config)
    other = public.copy()
    other[3, 0, 4, 4] += 0.25                                 # one pixel of one image differs
    np.savez(tmp_path / "theirs.npz", x=other, y=np.zeros(len(other), dtype=np.int64))
    node = {"partition-id": 0, "num-partitions": 2, "state-dir": str(tmp_path / "dev"),
            "anchor-path": str(tmp_path / "theirs.npz")}
    with pytest.raises(PublicSetMismatch) as err:
        _deliver(task, node)
    text = str(err.value)
    assert text.startswith("anchors: this device's public set (100 images, public.path ") and "\n" not in text
    assert task.anchor_sha256[:16] in text
    assert not (tmp_path / "dev" / "client-000" / "encoder.pt").exists()    # nothing trained
    # a device without the file its config names fails as early, naming it
    with pytest.raises(FleetError, match=r"edge.public.path: .*missing\.npz does not exist on this device"):
        _deliver(task, {**node, "anchor-path": str(tmp_path / "missing.npz")})
    # Flower hands the server the exception as "<class '...'>:<'...'>": the ServerApp names it
    reason = str(type(err.value)) + ":<'" + text + "'>"
    assert client_error(reason) == f"PublicSetMismatch: {text}"


def test_a_real_device_must_name_its_state_folder(tmp_path):
    task = device_task(_fleet(), "127.0.0.1:1", None)         # remote devices: no state root is sent
    with pytest.raises(FleetError, match=r"node_config\.state-dir: missing"):
        _deliver(task, {"partition-id": 0, "num-partitions": 2})


def test_pretrained_weights_arrive_in_the_message_with_their_wire_bytes():
    torch.manual_seed(0)
    state = {"enc.weight": torch.randn(32, 64), "enc.bias": torch.randn(32)}
    record = init_record(state)
    msg = Message(task_content(LatentTask({}, "127.0.0.1:1"), record), dst_node_id=1, message_type=LATENT_TRAIN)
    got = read_init(msg)
    assert set(got.state) == set(state) and all(torch.equal(got.state[k], state[k]) for k in state)
    payload = sum(t.numel() * 4 for t in state.values())
    assert got.wire_bytes == record_wire_bytes(record) and payload < got.wire_bytes < payload + 1024
    assert read_init(Message(task_content(LatentTask({}, "127.0.0.1:1")), dst_node_id=1,
                             message_type=LATENT_TRAIN)) is None
