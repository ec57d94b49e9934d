# meshlet: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
STATE_DIR ?= /var/lib/meshlet
DEBIAN_PACKAGES := iptables iproute2 curl procps util-linux ca-certificates nginx haproxy wrk nghttp2-client
BENCH_PACKAGES := nginx haproxy wrk nghttp2-client curl
PYTEST_ARGS ?=

.PHONY: setup setup-debian setup-python kube-tools bench-tools test demo down proto proto-check bench clean

## setup: install everything the mesh and the tests need (Debian packages, Python package)
setup: setup-debian setup-python

setup-debian:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

setup-python:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[dev]'

## kube-tools: build etcd, kube-apiserver and helm from Go modules once per machine (for the Kubernetes-mode tests)
kube-tools:
	tests/kube/tools/build.sh

## bench-tools: build the load generator oha from crates.io once (the bench harness tests drive real load with it)
bench-tools:
	@test -x bench/.tools/bin/oha || command -v oha >/dev/null || \
	  nice -n 10 $${CARGO:-$$(command -v cargo || echo $$HOME/.cargo/bin/cargo)} install oha@$(OHA_VERSION) --locked --root bench/.tools

## test: set up and run the whole suite (needs root: network namespaces and iptables; a real kube-apiserver)
test: setup kube-tools bench-tools
	$(PYTHON) -m pytest $(PYTEST_ARGS)

## demo: start the local mesh with Bookinfo, drive traffic, print per-workload stats
demo: setup
	meshlet --state-dir $(STATE_DIR) up -f e2e/apps/bookinfo/
	$(PYTHON) -m meshlet.e2e.demo --state-dir $(STATE_DIR) --duration 5
	@echo
	@echo "The mesh is still running. Try: meshlet get pods -n bookinfo; meshlet check"
	@echo "Stop it with: make down   (or: meshlet down)"

down:
	meshlet --state-dir $(STATE_DIR) down

BENCH_ARGS ?=
OHA_VERSION := 1.16.0

## bench: direct vs meshlet vs nginx vs haproxy mTLS sidecar pairs over HTTP/1, h2c and gRPC, plus the route-table and retry costs (root, ~10 min; BENCH_ARGS="--suite ..." for a part; builds oha once; rewrites docs/benchmarks.md)
bench: setup
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(MAKE) --no-print-directory bench-tools
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(PYTHON) -m bench.run $(BENCH_ARGS)

## proto: regenerate api/gen from api/proto
proto:
	$(PYTHON) api/generate.py

proto-check:
	$(PYTHON) api/generate.py --check

## crds: regenerate helm/meshlet-crds (the CRDs of the Istio, Gateway API and meshlet kinds) from the resource model
.PHONY: crds
crds:
	$(PYTHON) -m meshlet.controller.model.crd

.PHONY: chart install uninstall e2e-kube

# --- Kubernetes mode (a kind cluster on your machine; see README "Kubernetes mode") ---
KIND_CLUSTER ?= kind
HELM ?= helm
KUBECTL ?= kubectl
CP_NAMESPACE ?= meshlet
IMAGE ?= meshlet/meshlet
MESHLET_VERSION = $(shell $(PYTHON) -c 'import importlib.metadata as m; print(m.version("meshlet"))')
KUBE_VALUES ?= $(HOME)/.meshlet/kube-values.yaml

## chart: regenerate helm/meshlet-control-plane from the install code (a test fails when it is stale)
chart:
	$(PYTHON) -m meshlet.controller.cli.install_chart

## install: build the image, load it into kind, helm install the CRDs and the control plane into the current context, wait until ready
install: setup-python
	docker build -t $(IMAGE):$(MESHLET_VERSION) -t meshlet:dev .
	kind load docker-image --name $(KIND_CLUSTER) $(IMAGE):$(MESHLET_VERSION) meshlet:dev
	@mkdir -p $(dir $(KUBE_VALUES))
	@test -f $(KUBE_VALUES) || { meshlet install -n $(CP_NAMESPACE) --values-out $(KUBE_VALUES) >/dev/null && \
	  echo "generated trust anchor, issuer and webhook certificate into $(KUBE_VALUES) (keep it: upgrades reuse it)"; }
	$(HELM) upgrade --install meshlet-crds helm/meshlet-crds --wait
	$(HELM) upgrade --install meshlet-control-plane helm/meshlet-control-plane -n $(CP_NAMESPACE) --create-namespace \
	  -f $(KUBE_VALUES) --wait --timeout 5m
	$(KUBECTL) -n $(CP_NAMESPACE) rollout status deploy --timeout=300s
	meshlet check --mode kube -L $(CP_NAMESPACE)

## uninstall: remove the control plane and the CRDs (and with them every mesh resource) from the current context
uninstall:
	-$(HELM) uninstall meshlet-control-plane -n $(CP_NAMESPACE)
	-$(HELM) uninstall meshlet-crds
	$(KUBECTL) delete namespace $(CP_NAMESPACE) --ignore-not-found

## e2e-kube: the sample apps against the current kube context: Bookinfo injected, proxies checked, traffic through the mesh,
## then the e2e scenarios (e2e/scenarios) with the kube target (KubeMeshTarget, $KUBECONFIG or ~/.kube/config)
e2e-kube:
	meshlet check --mode kube -L $(CP_NAMESPACE)
	$(KUBECTL) apply -f e2e/apps/bookinfo/
	$(KUBECTL) -n bookinfo wait --for=condition=available deploy --all --timeout=300s
	meshlet check --proxy -n bookinfo -L $(CP_NAMESPACE)
	$(KUBECTL) -n bookinfo exec deploy/sleep -c sleep -- python -c \
	  'import urllib.request as u; r = u.urlopen("http://productpage:9080/api/v1/products/0/reviews", timeout=10); assert r.status == 200; print(r.read()[:200])'
	$(KUBECTL) -n bookinfo get pods -o custom-columns=NAME:.metadata.name,CONTAINERS:.spec.containers[*].name,INIT:.spec.initContainers[*].name
	MESHLET_E2E_CP_NAMESPACE=$(CP_NAMESPACE) $(PYTHON) -m pytest e2e/scenarios --mesh-target=kube -v
