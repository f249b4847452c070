# The operator image, also the model-staging init container (`python -m stratus.storage fetch`,
# with boto3 for s3:// and gs:// models).
# Debian bookworm's own python3 (3.11, the version CI tests with), a venv at /opt/stratus built
# in a stage of its own, run as non-root from a stage with no pip toolchain packages.
# docker build -t ghcr.io/stratus-dev/stratus-operator:0.1.0 .   (or: make images)
FROM debian:bookworm-slim AS python
# ca-certificates: model staging downloads over HTTPS. Debian's packages of one release are the
# pin; their point updates are security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
    && rm -rf /var/lib/apt/lists/*

FROM python AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Runtime dependencies only, at the versions pyproject.toml pins as lower bounds: a layer of
# their own, so a change to the sources reinstalls only the package. boto3 (the `s3` extra) is
# for the staging init container: models from s3:// and gs://. kubernetes 37.0.2 requires
# python-dateutil 3, which botocore refuses: 37.0.1 is the newest both accept.
RUN python3 -m venv /opt/stratus \
    && /opt/stratus/bin/pip install --no-compile \
        "kopf==1.45.2" "kubernetes==37.0.1" "pydantic==2.14.4" "prometheus-client==0.26.0" \
        "PyYAML==6.0.4" "boto3==1.44.8"
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/stratus/bin/pip install --no-compile --no-deps .

FROM python
LABEL org.opencontainers.image.source="https://github.com/stratus-dev/stratus" \
      org.opencontainers.image.description="Stratus operator"
COPY --from=build /opt/stratus /opt/stratus
# The venv first on PATH: `stratus` and `python` are the venv's.
ENV PATH=/opt/stratus/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["stratus"]
CMD ["operator"]
