# The gateway's image: the wheels `make dist` builds, installed into a slim Python 3.11 runtime.
# Nothing secret is in it: the SSH key, the callers' config and any TLS files are mounted at run time.
# Build: docker build -t encord-gateway:0.1.0 .   (docs/deployment.md; CI here does not build it)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir "build>=1.2"
COPY pyproject.toml MANIFEST.in README.md ./
COPY server ./server
COPY client_stubs/python ./client_stubs/python
# The two steps of `make dist`: both distributions, wheel and sdist each, into dist/.
RUN python -m build --outdir dist ./client_stubs/python \
 && python -m build --outdir dist .
# The wheels and every dependency's, resolved as `pip install --find-links dist encord-gateway` resolves
# them (tests/packaging), so that the runtime stage installs offline and needs no compiler.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels --find-links dist encord-gateway

FROM ${PYTHON_IMAGE} AS runtime
# A numeric user, so that Kubernetes' runAsNonRoot can tell it is not root without reading /etc/passwd.
RUN groupadd --system --gid 10001 encord-gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin encord-gateway \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/encord-gateway /var/log/encord-gateway
# The wheels are bind-mounted from the build stage, not copied: no layer keeps them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels encord-gateway
# The root filesystem can be read-only: bytecode was compiled at install, and the gateway writes only
# to these two volumes (the audit trail, the SQLite state store).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENCORD_SSH_KEY_FILE=/run/secrets/encord_ssh_key
VOLUME ["/var/lib/encord-gateway", "/var/log/encord-gateway"]
USER 10001:10001
# gRPC, the plaintext health port for probes, Prometheus metrics.
EXPOSE 50051 8081 9464
ENTRYPOINT ["encord-gateway"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--health-listen", "0.0.0.0:8081", \
     "--metrics-listen", "0.0.0.0:9464", "--config", "/etc/encord-gateway/gateway.toml", \
     "--audit-log", "/var/log/encord-gateway/audit.jsonl", \
     "--state-url", "sqlite:////var/lib/encord-gateway/state.db"]
