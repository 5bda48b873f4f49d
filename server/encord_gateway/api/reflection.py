"""Server reflection, v1 and v1alpha, over a descriptor pool that also finds a method's file."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"


class MethodAwarePool:
    """The default pool, plus method names: upb's FindFileContainingSymbol knows no `pkg.Service.Method`.

    Stock tools (`grpcurl describe encord_gateway.v1.ApiKeyService.CreateProjectApiKey`) ask reflection
    for the file of a method's full name; without this the answer is "symbol not found".
    """

    def __init__(self, pool: Any = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # A method: its service's file; KeyError (reflection's "not found") if there is no such method.
            return self._pool.FindMethodByName(symbol).containing_service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1's reflection.proto: v1alpha's under another package (same messages, same field numbers)."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{V1_PACKAGE}."
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    for message in proto.message_type:  # flat: v1alpha has no nested messages or enums
        for field in message.field:
            if field.HasField("type_name"):  # set even to "" it would make a string field a message's
                field.type_name = field.type_name.replace(old, new)
    for method in proto.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    # The options v1 itself declares; v1alpha's would name v1alpha's packages and mark it deprecated.
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.ClearField("deprecated")
    return proto


def _add_v1_file(pool: Any) -> None:
    """Puts v1's file in `pool` once (one process may build several servers)."""
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(v1_file())


def enable_reflection(service_names: tuple[str, ...], server: grpc.Server) -> None:
    """Reflection v1 and v1alpha for `service_names` and themselves, over the method-aware pool."""
    _add_v1_file(descriptor_pool.Default())
    pool: Any = MethodAwarePool()  # it answers as a DescriptorPool does
    servicer = reflection.ReflectionServicer(
        (*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME), pool=pool
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    # grpcio-reflection ships no v1; its wire bytes are v1alpha's, so v1alpha's classes serve it. Added to
    # the same server, it passes through the same interceptors (the "/grpc.reflection." ceiling).
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": info}),)
    )
