"""The committed gRPC stubs match federated.proto, and the service has the methods the SDK calls."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from swarmnet.proto import federated_pb2, federated_pb2_grpc

PROTO = Path(__file__).resolve().parents[2] / "swarmnet" / "proto" / "federated.proto"


def test_committed_descriptor_matches_the_proto_file(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools compiles the .proto")
    tree = tmp_path / "swarmnet" / "proto"
    tree.mkdir(parents=True)
    shutil.copy(PROTO, tree)
    out = tmp_path / "set.pb"
    rc = protoc.main(["protoc", f"-I{tmp_path}", f"--descriptor_set_out={out}", str(tree / PROTO.name)])
    assert rc == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(federated_pb2.DESCRIPTOR.serialized_pb)
    _drop_json_names(compiled)  # --descriptor_set_out fills json_name; the embedded descriptor leaves it out
    assert compiled == committed, "federated.proto changed: run scripts/gen_proto.sh"


def test_service_methods() -> None:
    service = federated_pb2.DESCRIPTOR.services_by_name["Coordinator"]
    assert sorted(m.name for m in service.methods) == sorted(
        ["Register", "GetTask", "SubmitUpdate", "FetchAdapter", "SecAgg", "Status"]
    )
    assert service.methods_by_name["SubmitUpdate"].client_streaming
    assert service.methods_by_name["FetchAdapter"].server_streaming
    assert federated_pb2.DESCRIPTOR.package == "swarmnet.federated.v1"
    assert hasattr(federated_pb2_grpc, "add_CoordinatorServicer_to_server")


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    stack = list(file.message_type)
    while stack:
        message = stack.pop()
        for field in message.field:
            field.ClearField("json_name")
        stack.extend(message.nested_type)
