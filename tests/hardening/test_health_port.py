"""--health-listen: grpc.health.v1 alone, in plaintext, on its own threads, beside the main port."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest
from encord_gateway.dev.devstack import DEMO_PROJECT, running_stack
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

TOKEN = secrets.token_urlsafe(24)
SERVING = health_pb2.HealthCheckResponse.SERVING


def test_the_health_port_serves_health_only_and_reads_the_same_status(tmp_path: Path) -> None:
    args = ["--health-listen", "127.0.0.1:0", "--workers", "2"]
    with running_stack(tmp_path, gateway_args=args, caller_token=TOKEN) as stack:
        line = stack.gateway.wait_for_line(lambda text: text.startswith("health on "))
        assert line is not None, stack.gateway.output
        health_address = line.split()[-1]
        assert health_address != stack.gateway.address
        with grpc.insecure_channel(health_address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == SERVING
            service = pb.DESCRIPTOR.services_by_name["ApiKeyService"].full_name
            named = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
            assert named.status == SERVING
            # Nothing else is served there: no keys, no reflection, nothing to authenticate.
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.ApiKeyServiceStub(channel).ListProjectApiKeys(
                    pb.ListProjectApiKeysRequest(project_hash=DEMO_PROJECT), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            for reflection in ("v1", "v1alpha"):
                info = channel.stream_stream(
                    f"/grpc.reflection.{reflection}.ServerReflection/ServerReflectionInfo",
                    request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                    response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
                )
                with pytest.raises(grpc.RpcError) as unlisted:
                    list(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
                assert unlisted.value.code() == grpc.StatusCode.UNIMPLEMENTED, reflection


def test_a_health_address_that_cannot_be_bound_stops_start_up(tmp_path: Path) -> None:
    with running_stack(tmp_path / "first", gateway_args=["--health-listen", "127.0.0.1:0"]) as first:
        line = first.gateway.wait_for_line(lambda text: text.startswith("health on "))
        assert line is not None
        taken = line.split()[-1]
        with (
            pytest.raises(RuntimeError, match=f"cannot serve health on {taken}"),
            running_stack(tmp_path / "second", gateway_args=["--health-listen", taken]),
        ):
            pass
