"""encord-gateway: a gRPC gateway that mints Encord API keys for services in any language."""

__version__ = "0.1.0"
