"""Server reflection over a descriptor pool that also finds a method's file, as grpcurl describe asks."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection


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


def enable_reflection(service_names: tuple[str, ...], server: grpc.Server) -> None:
    """Reflection for `service_names` and itself, over the method-aware pool."""
    pool: Any = MethodAwarePool()  # it answers as a DescriptorPool does
    reflection.enable_server_reflection((*service_names, reflection.SERVICE_NAME), server, pool=pool)
