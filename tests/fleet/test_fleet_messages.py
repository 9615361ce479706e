"""The latent pipeline's messages: typed records that cross Flower as JSON and read back equal, whose
plain form keeps report.json's per-client keys, and that fail with one line naming a garbled field."""
from __future__ import annotations

import json

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from common.errors import ContractError
from common.validation import ConfigError
from edge_client.summary import (DefenseReport, EvaluationSummary, Timings, UploadRecord, UploadSummary,
                                 WireReport)
from fleet.run.messages import ClientEvaluation, ClientUpload, LatentTask
from fleet.run.service import ExternalService
from fleet.run.transport import (LATENT_EVALUATE, LATENT_TRAIN, RESULT_KEY, read_reply, read_task, reply,
                                 task_content)

@pytest.fixture(autouse=True)
def _in_a_run(monkeypatch):
    """A message is made inside a run (Flower's TaskIdentity names it); here, run 1 on node 0."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 0)):
        monkeypatch.setattr(TaskIdentity, name, value)


# the keys of a client row in report.json before the summaries were typed (figures read them)
REPORT_ROW_KEYS = [
    "client_id", "server", "dataset", "partition", "alpha", "autoencoder", "analog", "n_train", "n_test", "labels",
    "rows", "latent_dim", "bits", "pixels", "payload_bytes", "bytes_per_sample", "raw_bytes", "compression_pixels",
    "compression_bytes", "wire_bytes", "compression_wire", "per_feature_scale", "scale", "quantization_rmse_rel",
    "recon_mse_initial", "recon_mse", "train_loss", "uploads", "rows_stored", "anchor_rows", "anchor_wire_bytes",
    "init_bytes_down", "client_total_rows", "attempts", "timings", "state_dir", "events", "defense",
    "partition_id", "num_partitions", "wall_s", "init_weights_bytes"]


def _summary(defense: bool = True) -> UploadSummary:
    return UploadSummary(
        client_id="client-001", server="127.0.0.1:5", dataset="digits", partition="1/4", alpha=None,
        autoencoder="mlp", analog=True, n_train=300, n_test=76, labels=(30,) * 10,
        wire=WireReport(rows=300, latent_dim=16, bits=8, pixels=64, payload_bytes=6000, bytes_per_sample=20.0,
                        raw_bytes=20400, compression_pixels=4.0, compression_bytes=3.4, wire_bytes=6100,
                        compression_wire=20400 / 6100),
        per_feature_scale=False, scale=(0.0123,), quantization_rmse_rel=0.004, recon_mse_initial=0.09,
        recon_mse=0.031, train_loss=(0.08, 0.05), uploads=(UploadRecord("u1", 300, 300, False, 1, 1, ()),),
        rows_stored=300, anchor_rows=0, anchor_wire_bytes=0, init_bytes_down=41000, client_total_rows=300,
        attempts=1, timings=Timings(0.1, 0.01, 3.0, 0.2, 0.05, 3.36), state_dir="/tmp/s/client-001",
        events={"counts": {"enc.0": {"train": {"pulses": 12.0}}}, "tiles": {}, "pulses_per_device": {}},
        defense=DefenseReport(0.1, 10.0, 1.0, 37.2, 1e-5, "replace-one (sensitivity 2 x clip_norm)", 0.02, 6.1,
                              0.0, 0.0, 20.0) if defense else None)


def _over_flower(result, message_type: str):
    """`result` as the ServerApp reads it from a device's reply message."""
    sent = Message(task_content(LatentTask({}, "127.0.0.1:5")), dst_node_id=1, message_type=message_type)
    return read_reply(reply(sent, result), message_type)


def test_a_train_reply_crosses_flower_and_reads_back_equal_with_the_report_row_keys():
    up = ClientUpload(_summary(), partition_id=1, num_partitions=4, wall_s=4.2, init_wire_bytes=41500)
    got = _over_flower(up, LATENT_TRAIN)
    assert got == up and isinstance(got.summary.wire, WireReport)
    plain = up.to_dict()
    assert list(plain) == REPORT_ROW_KEYS
    # the fleet's downlink is what crossed the wire; the float32 payload keeps its own key
    assert plain["init_bytes_down"] == 41500 and plain["init_weights_bytes"] == 41000
    no_defense = ClientUpload(_summary(defense=False), 1, 4, 4.2)
    assert "defense" not in no_defense.to_dict() and _over_flower(no_defense, LATENT_TRAIN) == no_defense


def test_an_evaluate_reply_crosses_flower_and_reads_back_equal():
    ev = ClientEvaluation(EvaluationSummary("client-001", 76, 70, 70 / 76, {0: 1.0, 7: 0.875}, 0.02), 1, 0.3)
    got = _over_flower(ev, LATENT_EVALUATE)
    assert got == ev and got.evaluation.per_class_accuracy == {0: 1.0, 7: 0.875}
    assert list(ev.to_dict()) == ["client_id", "n_test", "correct", "accuracy", "per_class_accuracy",
                                  "classify_s", "partition_id", "wall_s"]
    empty = ClientEvaluation(EvaluationSummary("client-002", 0, 0, float("nan")), 2, 0.1)
    assert list(empty.to_dict()) == ["client_id", "n_test", "correct", "accuracy", "partition_id", "wall_s"]


def _garbled(plain: dict) -> Message:
    sent = Message(task_content(LatentTask({}, "127.0.0.1:5")), dst_node_id=1, message_type=LATENT_TRAIN)
    return Message(RecordDict({RESULT_KEY: ConfigRecord({"json": json.dumps(plain)})}), reply_to=sent)


@pytest.mark.parametrize("change, message", [
    ({"n_train": "300"}, "train reply.n_train: got '300', must be an integer"),
    ({"timings": {"data_s": 0.1}}, "train reply.timings.register_s: missing"),
    ({"uploads": [{"upload_id": "u1"}]}, "train reply.uploads[0].rows: missing"),
    ({"wall_s": None}, "train reply.wall_s: got None, must be a number"),
    ({"rows": 1.5}, "train reply.rows: got 1.5, must be an integer"),
])
def test_a_garbled_train_reply_fails_with_one_line_naming_the_field(change, message):
    plain = {**ClientUpload(_summary(), 1, 4, 4.2).to_dict(), **change}
    with pytest.raises(ContractError) as err:
        read_reply(_garbled(plain), LATENT_TRAIN)
    assert str(err.value) == message


def test_a_task_crosses_flower_and_a_garbled_one_is_named():
    task = LatentTask({"fleet": {"name": "x"}}, "10.0.0.2:50051", None, "-----BEGIN CERTIFICATE-----", "ab" * 32)
    msg = Message(task_content(task), dst_node_id=1, message_type=LATENT_TRAIN)
    assert read_task(msg) == task
    bad = Message(RecordDict({"task": ConfigRecord({"json": json.dumps({"fleet": {}})})}), dst_node_id=1,
                  message_type=LATENT_TRAIN)
    with pytest.raises(ContractError, match=r"^task\.server_address: missing$"):
        read_task(bad)
    empty = Message(RecordDict({}), dst_node_id=1, message_type=LATENT_TRAIN)
    with pytest.raises(ContractError, match=r"^task: missing from the 'train.latent' message$"):
        read_task(empty)


def test_an_external_service_is_one_record_through_the_run_config():
    svc = ExternalService("10.0.0.2:50051", "tok", "/etc/ca.pem")
    assert svc.to_run_config() == {"latent-address": "10.0.0.2:50051", "admin-token": "tok", "latent-ca": "/etc/ca.pem"}
    assert ExternalService.from_run_config(svc.to_run_config()) == svc
    plain = ExternalService("10.0.0.2:50051")
    assert "latent-ca" not in plain.to_run_config() and plain.tls() is None and plain.ca_pem() is None
    assert ExternalService.from_run_config({"latent-address": ""}) is None
    with pytest.raises(ConfigError, match=r"^latent-address: got '', must be host:port"):
        ExternalService("")
