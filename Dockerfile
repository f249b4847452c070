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
# Runtime dependencies only, every package pinned with its hashes in the image's lock file
# (`make lock` writes it from pyproject.toml, at the venv's versions): a layer of their own, so a
# change to the sources reinstalls only the package. boto3 (the `s3` extra) is for the staging
# init container: models from s3:// and gs://.
COPY hack/requirements/image.txt ./requirements.txt
RUN python3 -m venv /opt/stratus \
    && /opt/stratus/bin/pip install --no-compile --require-hashes -r requirements.txt
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
