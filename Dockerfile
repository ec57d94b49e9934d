# One image for every meshlet component and the sample apps:
#   proxy:        python -m meshlet.proxy          (uid/gid 1337, the image's default user)
#   proxy-init:   python -m meshlet.proxy.init     (root + NET_ADMIN/NET_RAW, set by the injected pod spec)
#   destination:  python -m meshlet.destination --store kube
#   identity:     python -m meshlet.identity --store kube
#   injector:     python -m meshlet.injector
#   sample apps:  python -m meshlet.e2e.apps.<app>...   (manifests also under /opt/meshlet/samples)
# Build: docker build -t meshlet/meshlet:$(python -c 'import importlib.metadata as m; print(m.version("meshlet"))') .
FROM python:3.11-slim-bookworm

# iptables + iproute2 for proxy-init (capture rules) and debugging inside pods;
# curl: the e2e scenarios send their requests from inside the sleep pods with it (on kube too)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables iproute2 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# the build context is filtered by .dockerignore (no tests, caches or VCS data)
COPY . /src
RUN pip install --no-cache-dir --disable-pip-version-check . \
 && mkdir -p /opt/meshlet/samples \
 && cp -r e2e/apps/bookinfo e2e/apps/httpbin e2e/apps/emojivoto /opt/meshlet/samples/ \
 && find /opt/meshlet/samples -type f ! -name '*.yaml' -delete \
 && find /opt/meshlet/samples -type d -empty -delete \
 && cd / && rm -rf /src \
 && groupadd --gid 1337 meshlet \
 && useradd --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin meshlet

WORKDIR /
ENV PYTHONUNBUFFERED=1
USER 1337:1337
CMD ["python", "-m", "meshlet.proxy"]
