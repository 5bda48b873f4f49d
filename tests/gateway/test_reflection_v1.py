"""Reflection v1 beside v1alpha, through a real channel: services, methods, messages and fields resolve."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from encord_gateway.access.open_services import OPEN_SERVICE_CEILINGS
from encord_gateway.dev.devstack import Stack
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from interop.stock_tools import run, tool

SERVICE = "encord_gateway.v1.ApiKeyService"
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
V1_FILE = "grpc/reflection/v1/reflection.proto"
API_FILE = "encord_gateway/v1/api_keys.proto"
HEALTH_FILE = "grpc_health/v1/health.proto"
CEILING = OPEN_SERVICE_CEILINGS["/grpc.reflection."]


def info(channel: grpc.Channel, path: str) -> grpc.StreamStreamMultiCallable[Any, Any]:
    # Generic calls, not v1alpha's stub: the path is the version. v1's messages are v1alpha's bytes
    # (test_v1_file_is_v1alpha_under_another_package checks that from the served file itself).
    return channel.stream_stream(
        path,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )


def ask(channel: grpc.Channel, path: str, **request: str) -> reflection_pb2.ServerReflectionResponse:
    (answer,) = info(channel, path)(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=5)
    return answer


def files(answer: reflection_pb2.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    found = {}
    for raw in answer.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        found[proto.name] = proto
    return found


@pytest.mark.parametrize("path", [V1, V1ALPHA], ids=["v1", "v1alpha"])
def test_both_versions_list_both_reflection_services(channel: grpc.Channel, path: str) -> None:
    answer = ask(channel, path, list_services="")
    names = {s.name for s in answer.list_services_response.service}
    assert {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


@pytest.mark.parametrize("path", [V1, V1ALPHA], ids=["v1", "v1alpha"])
@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        (SERVICE, API_FILE),
        (f"{SERVICE}.ListProjectApiKeys", API_FILE),  # a method, as grpcurl describe and ghz ask
        ("encord_gateway.v1.ListProjectApiKeysRequest", API_FILE),
        ("encord_gateway.v1.ListProjectApiKeysRequest.project_hash", API_FILE),  # a field
        ("grpc.health.v1.Health.Check", HEALTH_FILE),
        ("grpc.reflection.v1.ServerReflection", V1_FILE),
    ],
)
def test_the_file_of_a_service_method_message_and_field(
    channel: grpc.Channel, path: str, symbol: str, file: str
) -> None:
    answer = ask(channel, path, file_containing_symbol=symbol)
    assert answer.original_request.file_containing_symbol == symbol
    found = files(answer)
    assert file in found, f"{symbol}: {sorted(found)}"
    package = found[file].package
    assert symbol.startswith(f"{package}.")


@pytest.mark.parametrize("symbol", [f"{SERVICE}.NoSuchMethod", "no.such.Symbol"])
def test_v1_does_not_find_a_stranger(channel: grpc.Channel, symbol: str) -> None:
    answer = ask(channel, V1, file_containing_symbol=symbol)
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_v1_file_is_v1alpha_under_another_package(channel: grpc.Channel) -> None:
    """The served v1 file, by name: v1's package and types, v1alpha's messages and field numbers."""
    v1 = files(ask(channel, V1, file_by_filename=V1_FILE))[V1_FILE]
    v1alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1alpha)
    assert v1.package == "grpc.reflection.v1"
    assert [s.name for s in v1.service] == ["ServerReflection"]
    (method,) = v1.service[0].method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert not v1.options.deprecated

    def shape(proto: descriptor_pb2.FileDescriptorProto) -> list[tuple[str, str, int, int, str]]:
        return [
            (m.name, f.name, f.number, f.type, f.type_name.rsplit(".", 1)[-1])
            for m in proto.message_type
            for f in m.field
        ]

    assert shape(v1) == shape(v1alpha)
    assert all(
        f.type_name.startswith(".grpc.reflection.v1.")
        for m in v1.message_type
        for f in m.field
        if f.type_name
    )


def finished(call: object) -> bool:
    assert isinstance(call, grpc.Future)  # a streaming call is also a Future (not in the type stubs)
    return call.done()


def test_v1_and_v1alpha_share_the_reflection_ceiling(channel: grpc.Channel) -> None:
    """v1 passes through the server's interceptors, and counts with v1alpha: CEILING calls of both at once.

    Counted per service, each version had its own CEILING: a stranger could hold twice as many workers.
    """
    extra = 4
    release = threading.Event()

    def held() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        release.wait(30)  # sends nothing: the call holds its slot
        return
        yield  # a generator that never yields a request

    calls = [info(channel, (V1, V1ALPHA)[n % 2])(held(), timeout=30) for n in range(CEILING + extra)]
    try:
        deadline = time.monotonic() + 15
        while sum(map(finished, calls)) < extra and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [c.code() for c in calls if finished(c)]
        assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * extra, refused
    finally:
        for call in calls:
            call.cancel()
        release.set()


def test_grpcurl_describes_a_method_and_a_field(stack: Stack) -> None:
    """grpcurl (v1 first, v1alpha as fallback) resolves a method's and a field's full name."""
    grpcurl = (tool("grpcurl"), "-plaintext", stack.gateway.address)
    for symbol, shown in [
        (f"{SERVICE}.ListProjectApiKeys", "ListProjectApiKeysRequest"),
        ("encord_gateway.v1.ListProjectApiKeysRequest.project_hash", "project_hash"),
        ("grpc.health.v1.Health.Check", "HealthCheckRequest"),
    ]:
        described = run(*grpcurl, "describe", symbol)
        assert described.returncode == 0, described.stderr
        assert shown in described.stdout
