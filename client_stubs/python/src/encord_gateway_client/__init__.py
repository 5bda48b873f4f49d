"""encord-gateway's Python client: generated stubs in `v1`, and a small typed client on top."""

from ._version import __version__
from .channel import is_loopback
from .client import DEFAULT_TIMEOUT_S, GatewayClient, connect
from .errors import FieldViolation, GatewayError, map_rpc_errors
from .models import DatasetApiKey, ProjectApiKey
from .scopes import DatasetScope, ProjectScope

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DatasetApiKey",
    "DatasetScope",
    "FieldViolation",
    "GatewayClient",
    "GatewayError",
    "ProjectApiKey",
    "ProjectScope",
    "__version__",
    "connect",
    "is_loopback",
    "map_rpc_errors",
]
