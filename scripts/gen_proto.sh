#!/usr/bin/env bash
# Regenerate swarmnet/proto/federated_pb2{,_grpc}.py{,i} from federated.proto.
# grpcio-tools 1.81 emits protobuf 6.33 gencode, which runs under protobuf 6.31+ and 7.x alike
# (1.85 emits 7.x gencode, which fails under the protobuf 6 runtime hivemind may bring along).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${PROTOGEN_VENV:-/tmp/swarmnet-protogen}"
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
"$tools/bin/python" -m pip install --disable-pip-version-check -q "grpcio-tools==1.81.1"
tree="$(mktemp -d)"; trap 'rm -rf "$tree"' EXIT
# protoc names imports after the path under -I; laying the file out as the installed package
# makes the generated _grpc module import ``swarmnet.proto.federated_pb2``.
mkdir -p "$tree/swarmnet/proto"
cp swarmnet/proto/federated.proto "$tree/swarmnet/proto/"
"$tools/bin/python" -m grpc_tools.protoc -I "$tree" --python_out="$tree" --pyi_out="$tree" \
    --grpc_python_out="$tree" "$tree/swarmnet/proto/federated.proto"
cp "$tree"/swarmnet/proto/federated_pb2*.py* swarmnet/proto/
echo "generated: $(ls swarmnet/proto/federated_pb2*)"
