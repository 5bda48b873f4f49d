"""Opt-in OpenTelemetry tracing: whether the OTEL_* environment asks for it, and starting it if so.

This module imports nothing of OpenTelemetry: a gateway whose environment does not ask for tracing
never loads it. `start()` imports `tracing.otel`, which needs the `tracing` extra.

Tracing is on when OTEL_TRACES_EXPORTER names an exporter other than `none` and OTEL_SDK_DISABLED is
not `true`. Unlike the OpenTelemetry specification, whose default exporter is `otlp`, an unset
OTEL_TRACES_EXPORTER means off: tracing is opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from encord_gateway.config import ConfigError

if TYPE_CHECKING:
    from encord_gateway.api.tracing.otel import Tracing

__all__ = ["EXPORTERS", "TracingConfig", "load", "start"]

# What OTEL_TRACES_EXPORTER may name (a comma-separated list of them): OTLP over gRPC, and the SDK's
# console exporter (to stderr, so that stdout keeps its one `listening on` line).
EXPORTERS = frozenset({"otlp", "console"})
# The OTLP exporter the extra ships speaks gRPC; http/protobuf and http/json would need another package.
PROTOCOLS = frozenset({"grpc"})
INSTALL_HINT = "pip install 'encord-gateway[tracing]'"


@dataclass(frozen=True, kw_only=True)
class TracingConfig:
    """What the OTEL_* environment asks of tracing; built by `from_env`, None there meaning off."""

    exporters: tuple[str, ...]
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's default.
    endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TracingConfig | None:
        """The tracing `env` asks for, None for none; ConfigError for a request that cannot be met."""
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
        if not names or names == ["none"]:
            return None
        unknown = sorted(set(names) - EXPORTERS - {"none"})
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: this gateway can export traces "
                f"with {' and '.join(sorted(EXPORTERS))} (or none)"
            )
        exporters = tuple(dict.fromkeys(n for n in names if n != "none"))
        if "otlp" in exporters:
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            ).strip()
            if protocol not in PROTOCOLS:
                raise ConfigError(
                    f"the OTLP protocol {protocol!r} is not supported: this gateway exports OTLP over grpc"
                )
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return cls(exporters=exporters, endpoint=endpoint or None)

    def describe(self) -> str:
        """One line for `serve --check`: the exporters and where OTLP goes (no headers: they hold tokens)."""
        where = f"otlp to {self.endpoint or 'the default endpoint'}"
        return ", ".join(where if name == "otlp" else name for name in self.exporters)


def load() -> type[Tracing]:
    """The OpenTelemetry side (importing it); ConfigError, in one line, if the extra is not installed."""
    try:
        from encord_gateway.api.tracing.otel import Tracing
    except ImportError as exc:
        missing = exc.name or "opentelemetry"
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER asks for tracing, but {missing} is not installed ({INSTALL_HINT})"
        ) from None
    return Tracing


def start(config: TracingConfig) -> Tracing:
    """OpenTelemetry, set up as `config` says: its exporters, its provider, its propagators."""
    return load()(config)
