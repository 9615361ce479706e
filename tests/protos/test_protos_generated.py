"""The checked-in generated code must match what grpcio-tools makes from the .proto now."""
import ast
import importlib.metadata
import re

from protos import generate
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc


def _serialized_descriptor(pb2_source: str) -> bytes:
    m = re.search(r"AddSerializedFile\((b'.*?')\)\n", pb2_source, re.S)
    assert m, "no serialized descriptor in the generated _pb2.py"
    return ast.literal_eval(m.group(1))


def test_generated_code_is_not_stale(tmp_path):
    outputs = generate.generate(tmp_path)
    fresh = {p.name: p.read_text() for p in outputs}
    checked_in = {name: (generate.PROTO_DIR / name).read_text() for name in fresh}
    # The descriptor (every message, field, number and rpc) must be identical, whatever protoc version.
    assert _serialized_descriptor(fresh["latent_service_pb2.py"]) == pb.DESCRIPTOR.serialized_pb
    assert _serialized_descriptor(fresh["latent_service_pb2.py"]) == \
        _serialized_descriptor(checked_in["latent_service_pb2.py"])
    # Same tool version -> byte-identical files (a hand edit fails here).
    tools = importlib.metadata.version("grpcio-tools")
    if f"GRPC_GENERATED_VERSION = '{tools}'" in checked_in["latent_service_pb2_grpc.py"]:
        assert fresh == checked_in


def test_grpc_stub_exposes_every_rpc_of_the_proto():
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["LatentService"].methods}
    assert methods == {"Register", "Upload", "Classify", "Status", "TrainClassifier", "RevokeTokens"}
    for name in methods:
        assert hasattr(pb_grpc.LatentServiceServicer, name)
