# The agentcat orchestrator image (used by docker-compose.yml).
#
# BASE_IMAGE: any Debian bookworm image. With a registry, the default works;
# offline, build the local base first (`agentcat images build` makes
# agentcat/base:bookworm with debootstrap) and pass --build-arg
# BASE_IMAGE=agentcat/base:bookworm.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    INSPECT_DISPLAY=none

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# extra CA certificates for pip behind a proxy (see docker/extra-ca-certificates/README.md)
COPY docker/extra-ca-certificates/ /usr/local/share/ca-certificates/agentcat/
RUN update-ca-certificates >/dev/null 2>&1 || true
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
# dependencies first (cached while only the code changes); no torch: calibration
# is not part of a live run (`pip install agentcat[calibrate]` adds it)
COPY pyproject.toml README.md /app/
RUN python3 -m venv /opt/agentcat \
 && /opt/agentcat/bin/pip install -q --upgrade pip \
 && /opt/agentcat/bin/python -c "import tomllib; \
print('\n'.join(tomllib.load(open('/app/pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/deps.txt \
 && /opt/agentcat/bin/pip install -q -r /tmp/deps.txt

COPY orchestrator/ /app/orchestrator/
COPY environments/ /app/environments/
COPY item_banks/ /app/item_banks/
COPY configs/ /app/configs/
RUN /opt/agentcat/bin/pip install -q --no-deps /app

ENV PATH=/opt/agentcat/bin:$PATH
ENTRYPOINT ["agentcat"]
CMD ["--help"]
