"""Analysis messages: Istio's IST codes where they exist (pkg/config/analysis/msg/messages.yaml), MLT for meshlet's.

A message is data (`Message`); rendering is `Message.line()`, istioctl's format:
`Error [IST0101] (VirtualService bookinfo/reviews) Referenced host not found: "reviews2"`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Level(enum.Enum):
    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"

    @property
    def rank(self) -> int:
        return {"Error": 0, "Warning": 1, "Info": 2}[self.value]


@dataclass(frozen=True)
class MessageType:
    code: str
    name: str
    level: Level
    template: str


REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", "ReferencedResourceNotFound", Level.ERROR,
                                            "Referenced {0} not found: \"{1}\"")
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", "SchemaValidationError", Level.ERROR, "Schema validation error: {0}")
CONFLICTING_MESH_GATEWAY_VS_HOSTS = MessageType(
    "IST0109", "ConflictingMeshGatewayVirtualServiceHosts", Level.ERROR,
    "The VirtualServices {0} associated with mesh gateway define the same host {1} which can lead to undefined "
    "behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.")
VS_UNREACHABLE_RULE = MessageType("IST0130", "VirtualServiceUnreachableRule", Level.WARNING,
                                  "VirtualService rule {0} not used ({1}).")
VS_INEFFECTIVE_MATCH = MessageType("IST0131", "VirtualServiceIneffectiveMatch", Level.INFO,
                                   "VirtualService rule {0} match {1} is not used "
                                   "(duplicate/overlapping match in rule {2}).")
VS_HOST_NOT_FOUND_IN_GATEWAY = MessageType("IST0132", "VirtualServiceHostNotFoundInGateway", Level.WARNING,
                                           "one or more host {0} defined in VirtualService {1} not found in "
                                           "Gateway {2}.")
DR_SUBSET_NOT_SELECT_PODS = MessageType("IST0173", "DestinationRuleSubsetNotSelectPods", Level.WARNING,
                                        "The Subset {0} defined in the DestinationRule does not select any pods.")
UNKNOWN_DR_HOST = MessageType("IST0174", "UnknownDestinationRuleHost", Level.WARNING,
                              "The host {0} defined in the DestinationRule does not match any services in the mesh.")
SPELLING_ACCEPTED = MessageType("MLT0001", "NonCanonicalSpelling", Level.WARNING, "{0}")
PORT_LEVEL_MTLS_WITHOUT_SELECTOR = MessageType(
    "MLT0002", "PortLevelMtlsWithoutSelector", Level.WARNING,
    "portLevelMtls for port(s) {0} has no effect without a selector (Istio rejects it); "
    "add spec.selector or drop portLevelMtls.")
DUPLICATE_DESTINATION_RULES = MessageType(
    "MLT0003", "DuplicateDestinationRuleHost", Level.WARNING,
    "DestinationRules {0} all apply to host {1}; only the oldest one is used for each setting.")
GATEWAY_SERVER_WITHOUT_TLS = MessageType(
    "MLT0004", "GatewayServerWithoutTls", Level.WARNING,
    "server {0} on port {1} has protocol {2} but no tls settings (Istio rejects this); add tls.mode "
    "and a credentialName.")

ALL_TYPES = (REFERENCED_RESOURCE_NOT_FOUND, SCHEMA_VALIDATION_ERROR, CONFLICTING_MESH_GATEWAY_VS_HOSTS,
             VS_UNREACHABLE_RULE, VS_INEFFECTIVE_MATCH, VS_HOST_NOT_FOUND_IN_GATEWAY, DR_SUBSET_NOT_SELECT_PODS,
             UNKNOWN_DR_HOST, SPELLING_ACCEPTED, PORT_LEVEL_MTLS_WITHOUT_SELECTOR, DUPLICATE_DESTINATION_RULES,
             GATEWAY_SERVER_WITHOUT_TLS)


@dataclass(frozen=True)
class Origin:
    """The resource a message is about: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Message:
    type: MessageType
    origin: Origin
    args: tuple[Any, ...]
    path: str = ""
    """Field path inside the resource, when known (shown in JSON output)."""
    hint: str = ""
    """A likely fix ("did you mean ...?"), appended to the text."""

    @property
    def level(self) -> Level:
        return self.type.level

    @property
    def text(self) -> str:
        text = self.type.template.format(*self.args)
        return f"{text} ({self.hint})" if self.hint else text

    def line(self) -> str:
        return f"{self.level.value} [{self.type.code}] ({self.origin}) {self.text}"

    def to_json(self) -> dict[str, Any]:
        """istioctl's `-o json` shape."""
        out: dict[str, Any] = {
            "code": self.type.code, "level": self.level.value, "message": self.text,
            "origin": str(self.origin),
            "documentationUrl": f"https://istio.io/latest/docs/reference/config/analysis/{self.type.code.lower()}/"
            if self.type.code.startswith("IST") else "",
        }
        if self.path:
            out["path"] = self.path
        return out


def sort_key(m: Message) -> tuple[Any, ...]:
    return (m.level.rank, m.origin.namespace, m.origin.kind, m.origin.name, m.type.code, m.text)
