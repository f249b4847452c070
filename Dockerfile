# The operator image: built in one stage, run from a slim one with no build tools, as non-root.
# docker build -t ghcr.io/stratus-dev/stratus-operator:0.1.0 .
FROM python:3.12.8-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stratus
COPY pyproject.toml README.md ./
COPY operator ./operator
# Runtime dependencies only, at the versions pyproject.toml pins as lower bounds.
RUN /opt/stratus/bin/pip install --no-compile \
        "kopf==1.45.2" "kubernetes==37.0.2" "pydantic==2.14.4" "prometheus-client==0.26.0" \
        "PyYAML==6.0.4" \
    && /opt/stratus/bin/pip install --no-compile --no-deps .

FROM python:3.12.8-slim-bookworm
LABEL org.opencontainers.image.source="https://github.com/stratus-dev/stratus" \
      org.opencontainers.image.description="Stratus operator"
COPY --from=build /opt/stratus /opt/stratus
ENV PATH=/opt/stratus/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["stratus"]
CMD ["operator"]
