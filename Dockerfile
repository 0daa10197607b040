# runyard itself (the service), not a project image: see docs/kubernetes.md for those.
#   docker build -t runyard:dev .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from a copy of the source, then keep only what runs: the installed package and
# the Kubernetes templates (they are not Python package data).
# Dependencies come from the runtime lock, so the image has exactly the tested versions.
COPY pyproject.toml README.md /src/
COPY requirements/runtime.lock /src/requirements/runtime.lock
COPY app /src/app
COPY validators /src/validators
COPY k8s_templates /opt/runyard/k8s_templates
RUN pip install -r /src/requirements/runtime.lock \
    && pip install --no-deps /src \
    && rm -rf /src \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin runyard \
    && mkdir -p /data \
    && chown runyard:runyard /data

ENV RUNYARD_HOST=0.0.0.0 \
    RUNYARD_PORT=8080 \
    RUNYARD_DATABASE=/data/runyard.db \
    RUNYARD_K8S_TEMPLATES=/opt/runyard/k8s_templates

# A numeric user, so Kubernetes can check runAsNonRoot.
USER 10001:10001
WORKDIR /data
EXPOSE 8080
VOLUME ["/data"]
CMD ["runyard", "serve"]
