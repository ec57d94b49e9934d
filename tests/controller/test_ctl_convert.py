"""The generic converter: round trips and every error path, on the real kinds and on test-only dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    ConversionError,
    Deployment,
    ObjectMeta,
    Pod,
    PodSpec,
    PodStatus,
    Service,
    ServicePort,
    ServiceSpec,
    from_obj,
    to_obj,
    yfield,
)
from meshlet.controller.model.core import Container, ContainerStatus, EnvVar


@dataclass(frozen=True)
class Mtls:
    mode: Literal["STRICT", "PERMISSIVE", "DISABLE"] = "PERMISSIVE"


@dataclass(frozen=True)
class PeerAuthLikeSpec:
    mtls: Mtls | None = yfield(warn_aliases=("mTLS",), default=None)
    port_level_mtls: dict[int, Mtls] = field(default_factory=dict)
    weights: tuple[float, ...] = ()
    extra: Any = None


def issues(exc: pytest.ExceptionInfo[ConversionError]) -> list[str]:
    return [str(i) for i in exc.value.issues]


def test_service_round_trip() -> None:
    data = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "bookinfo", "labels": {"app": "reviews"}},
        "spec": {"selector": {"app": "reviews"}, "clusterIP": "198.19.0.9",
                 "ports": [{"port": 9080, "name": "http", "targetPort": "http", "appProtocol": "http"}]},
    }
    svc = from_obj(Service, data)
    assert svc.spec.cluster_ip == "198.19.0.9"
    assert svc.spec.ports == (ServicePort(port=9080, name="http", target_port="http", app_protocol="http"),)
    assert from_obj(Service, to_obj(svc)) == svc
    out = to_obj(svc)
    assert out["apiVersion"] == "v1" and out["kind"] == "Service"
    assert out["spec"]["clusterIP"] == "198.19.0.9"
    assert out["spec"]["ports"][0]["targetPort"] == "http"


def test_pod_with_status_round_trip() -> None:
    pod = Pod(metadata=ObjectMeta(name="p", namespace="ns", annotations={"meshlet.io/proxy": "injected"}),
              spec=PodSpec(containers=(Container(name="app", command=("python3", "-m", "x"),
                                                 env=(EnvVar("A", "1"),)),), service_account_name="sa"),
              status=PodStatus(phase="Running", pod_ip="198.18.0.5", ready=True,
                               container_statuses=(ContainerStatus("app", True, 2),)))
    obj = to_obj(pod)
    assert obj["status"]["podIP"] == "198.18.0.5"
    assert obj["spec"]["serviceAccountName"] == "sa"
    assert obj["status"]["containerStatuses"][0]["restartCount"] == 2
    assert from_obj(Pod, obj) == pod


def test_unknown_field_suggests_the_closest_name() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x"}, "spec": {"prots": [], "selectr": {}}})
    assert issues(e) == ["spec.prots: unknown field; did you mean 'ports'?",
                         "spec.selectr: unknown field; did you mean 'selector'?"]


def test_unknown_field_case_mismatch_suggests_canonical() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x"}, "spec": {"clusterIp": "1.2.3.4"}})
    assert issues(e) == ["spec.clusterIp: unknown field; did you mean 'clusterIP'?"]


def test_unknown_field_without_close_match() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x"}, "spec": {"zzzzzz": 1}})
    assert issues(e) == ["spec.zzzzzz: unknown field"]


def test_type_errors_name_the_path() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x", "labels": {"a": 1}},
                           "spec": {"ports": [{"port": "abc"}, {"port": True, "targetPort": 1.5}],
                                    "selector": "app=x"}})
    assert issues(e) == [
        "metadata.labels.a: expected string, got 1",
        "spec.ports[0].port: expected integer, got 'abc'",
        "spec.ports[1].port: expected integer, got true",
        "spec.ports[1].targetPort: expected integer or string, got 1.5",
        "spec.selector: expected a mapping, got 'app=x'",
    ]


def test_missing_required_fields() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Deployment, {"metadata": {}, "spec": {"template": {}}})
    assert issues(e) == ["metadata.name: missing required field", "spec.selector: missing required field"]


def test_literal_and_list_shape_errors() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x"}, "spec": {"type": "Bogus", "ports": {"port": 1}}})
    assert issues(e) == ["spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName; got 'Bogus'",
                         "spec.ports: expected a list, got a mapping"]


def test_validate_hooks_report_semantic_errors() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "Bad_Name"},
                           "spec": {"ports": [{"port": 70000, "name": "a"}, {"port": 80, "name": "a"}]}})
    text = issues(e)
    assert any(t.startswith("metadata.name: name 'Bad_Name' is invalid") for t in text)
    assert "spec.ports[0].port: port must be between 1 and 65535, got 70000" in text
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "1st.svc"}})
    assert issues(e) == ["metadata.name: service name '1st.svc' is invalid: use lower-case letters, digits and '-', "
                         "starting and ending with a letter or digit"]
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "1st"}})
    assert issues(e) == ["metadata.name: service name '1st' is invalid: it must start with a letter"]
    # checks of a whole object run once its parts are valid
    with pytest.raises(ConversionError) as e:
        from_obj(Service, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 81, "name": "a"},
                                                                         {"port": 80, "name": "a"}]}})
    assert issues(e) == ["spec.ports[1].name: duplicate port name 'a'"]


def test_deployment_selector_must_match_template() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(Deployment, {"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}}})
    assert issues(e) == ["spec.template.metadata.labels: do not match selector.matchLabels"]


def test_null_means_unset_for_optional_fields() -> None:
    svc = from_obj(Service, {"metadata": {"name": "x", "labels": None}, "spec": {"ports": None}})
    assert svc.metadata.labels == {} and svc.spec.ports == ()


def test_alias_is_accepted_with_a_warning() -> None:
    warnings: list[str] = []
    spec = from_obj(PeerAuthLikeSpec, {"mTLS": {"mode": "STRICT"}}, "spec", warnings=warnings)
    assert spec.mtls == Mtls("STRICT")
    assert warnings == ["spec.mTLS: 'mTLS' is accepted as a spelling of 'mtls'; please write 'mtls'"]
    assert to_obj(spec) == {"mtls": {"mode": "STRICT"}}  # written back canonically


def test_alias_and_canonical_together_is_an_error() -> None:
    with pytest.raises(ConversionError) as e:
        from_obj(PeerAuthLikeSpec, {"mTLS": {"mode": "STRICT"}, "mtls": {"mode": "STRICT"}})
    assert issues(e) == ["mTLS: both 'mTLS' and 'mtls' given; keep only 'mtls'"]


@dataclass(frozen=True)
class HeaderSource:
    name: str
    prefix: str | None = None


def _header_names(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise TypeError("expected a list of header names")
    return [{"name": str(h)} for h in value]


@dataclass(frozen=True)
class JwtRuleLike:
    issuer: str
    from_headers: tuple[HeaderSource, ...] = yfield(warn_aliases=(("headers", _header_names),), default=())
    from_: tuple[str, ...] = ()  # a Python keyword: the field is spelled "from"


def test_alias_with_an_adapter_for_another_shape() -> None:
    warnings: list[str] = []
    rule = from_obj(JwtRuleLike, {"issuer": "x", "headers": ["Authorization"], "from": ["a"]}, "rule",
                    warnings=warnings)
    assert rule.from_headers == (HeaderSource("Authorization"),) and rule.from_ == ("a",)
    assert warnings == ["rule.headers: 'headers' is accepted as a spelling of 'fromHeaders'; please write 'fromHeaders'"]
    assert to_obj(rule) == {"issuer": "x", "fromHeaders": [{"name": "Authorization"}], "from": ["a"]}
    with pytest.raises(ConversionError) as e:
        from_obj(JwtRuleLike, {"issuer": "x", "headers": "Authorization"}, "rule")
    assert issues(e) == ["rule.headers: cannot be read as 'fromHeaders': expected a list of header names"]


def test_integer_keys_survive_json() -> None:
    spec = from_obj(PeerAuthLikeSpec, {"portLevelMtls": {8080: {"mode": "DISABLE"}}, "weights": [1, 2.5]})
    assert spec.port_level_mtls == {8080: Mtls("DISABLE")}
    assert spec.weights == (1.0, 2.5)
    as_json = {"portLevelMtls": {"8080": {"mode": "DISABLE"}}, "weights": [1.0, 2.5]}
    assert from_obj(PeerAuthLikeSpec, as_json) == spec
    with pytest.raises(ConversionError) as e:
        from_obj(PeerAuthLikeSpec, {"portLevelMtls": {"http": {}}})
    assert issues(e) == ["portLevelMtls.http: keys must be integers, got 'http'"]


@dataclass(frozen=True)
class WithNonEmptyDefault:
    methods: tuple[str, ...] = ("GET",)


def test_empty_value_of_a_non_empty_default_round_trips() -> None:
    assert to_obj(WithNonEmptyDefault(())) == {"methods": []}
    assert from_obj(WithNonEmptyDefault, to_obj(WithNonEmptyDefault(()))) == WithNonEmptyDefault(())
    assert to_obj(WithNonEmptyDefault()) == {"methods": ["GET"]}


def test_any_fields_pass_through() -> None:
    spec = from_obj(PeerAuthLikeSpec, {"extra": {"free": ["form", 1]}})
    assert spec.extra == {"free": ["form", 1]}


def test_registry_decode_checks_kind_and_api_version() -> None:
    with pytest.raises(ConversionError) as e:
        DEFAULT_REGISTRY.decode({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "x"}})
    assert issues(e) == ["kind: kind Deployment does not exist in apiVersion 'v1'; use apiVersion: apps/v1"]
    with pytest.raises(ConversionError) as e:
        DEFAULT_REGISTRY.decode({"apiVersion": "v1", "kind": "Servic", "metadata": {"name": "x"}})
    assert issues(e) == ["kind: unknown kind 'Servic' (apiVersion v1); did you mean 'Service'?"]
    with pytest.raises(ConversionError) as e:  # no look-alike suggested from another API group
        DEFAULT_REGISTRY.decode({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin"})
    assert issues(e) == ["kind: unknown kind 'WasmPlugin' (apiVersion extensions.istio.io/v1alpha1); meshlet knows "
                         + ", ".join(sorted(DEFAULT_REGISTRY.kinds()))]
    with pytest.raises(ConversionError) as e:
        DEFAULT_REGISTRY.decode({"metadata": {"name": "x"}})
    assert issues(e) == ["apiVersion: missing required field", "kind: missing required field"]
    with pytest.raises(ConversionError) as e:
        DEFAULT_REGISTRY.decode(["not", "a", "mapping"])
    assert issues(e) == ["expected a mapping (a resource), got a list"]


def test_registry_short_names() -> None:
    for name, kind in [("po", "Pod"), ("pods", "Pod"), ("Pod", "Pod"), ("svc", "Service"),
                       ("deploy", "Deployment"), ("deployment.apps", "Deployment"), ("ns", "Namespace"),
                       ("sa", "ServiceAccount"), ("workloadtokens", "WorkloadToken")]:
        assert DEFAULT_REGISTRY.resolve(name).kind == kind
    assert DEFAULT_REGISTRY.for_kind(Service).display == "service"
    assert DEFAULT_REGISTRY.for_kind("Deployment").display == "deployment.apps"


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
ports = st.builds(ServicePort, port=st.integers(1, 65535), name=names,
                  target_port=st.one_of(st.integers(1, 65535), names),
                  protocol=st.sampled_from(["TCP", "UDP"]), app_protocol=st.one_of(st.none(), st.just("http")))


@settings(max_examples=50, deadline=None)
@given(name=names, ns=names, labels=st.dictionaries(names, names, max_size=3),
       port=st.lists(ports, max_size=1), ip=st.one_of(st.none(), st.just("198.19.0.7")))
def test_service_round_trip_property(name: str, ns: str, labels: dict[str, str], port: list[ServicePort],
                                     ip: str | None) -> None:
    svc = Service(metadata=ObjectMeta(name=name, namespace=ns, labels=labels),
                  spec=ServiceSpec(selector=labels, ports=tuple(port), cluster_ip=ip))
    assert from_obj(Service, to_obj(svc)) == svc


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["metadata", "spec", "name", "ports", "port", "containers", "selector",
                                       "template", "matchLabels", "labels", "status", "podIP", "x"]) | st.text(max_size=5),
                      children, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["Service", "Pod", "Deployment", "Namespace", "ServiceAccount", "WorkloadToken"]),
       body=st.dictionaries(st.sampled_from(["metadata", "spec", "status", "extra"]), json_like, max_size=3))
def test_any_input_gives_a_resource_or_a_conversion_error(kind: str, body: dict[str, Any]) -> None:
    info = DEFAULT_REGISTRY.for_kind(kind)
    try:
        resource = DEFAULT_REGISTRY.decode({"apiVersion": info.api_version, "kind": kind, **body})
    except ConversionError as e:
        assert e.issues and all(isinstance(i.message, str) and i.message for i in e.issues)
    else:
        assert DEFAULT_REGISTRY.decode(to_obj(resource)) == resource
