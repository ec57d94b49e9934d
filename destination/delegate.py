"""Delegate VirtualServices (pure): a root's `http[].delegate` replaced by the delegate's rules.

Istio's semantics (pilot `mergeVirtualServicesIfNeeded` / `mergeHTTPRoute`):
- a root http rule `{match: [...], delegate: {name, namespace}}` (namespace
  unset: the root's) is replaced, in place, by the delegate VirtualService's
  http rules; the delegate has no `hosts` and is never applied on its own;
- each delegate rule's matches are merged with the root rule's: every
  delegate match must be a subset of at least one root match (uri, scheme,
  method, authority: an exact/prefix inside the root's prefix, equal exact,
  regex only against no condition; headers, queryParams, withoutHeaders,
  port, sourceNamespace, sourceLabels, gateways must not contradict); one
  merged match per compatible (root, delegate) pair, the delegate's
  conditions winning, the root's filling in. A delegate rule with a match
  that fits no root match conflicts and is dropped (Istio logs and drops it);
  a delegate rule without matches takes the root's;
- fields the delegate rule leaves unset are taken from the root rule:
  rewrite, directResponse, timeout, retries, fault, mirror(s) and mirror
  percentage, corsPolicy, headers; names join as `root-delegate`;
- destinations in the delegate's rules are resolved in the delegate's
  namespace; the delegate must be exported to the root's namespace;
- one level only: a delegate's own `delegate` rules are dropped.
A delegate that does not exist (yet) contributes no rules: the root rule is
skipped until it appears (Istio drops it too).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .hosts import visible
from .values import attr, items, mapping

DelegateLookup = Callable[[str, str], Any | None]
"""(namespace, name) -> the VirtualService, or None."""

_INHERITED = ("rewrite", "direct_response", "timeout", "retries", "fault", "mirror", "mirrors", "mirror_percent",
              "mirror_percentage", "cors_policy", "headers")


@dataclass(frozen=True)
class ExpandedRule:
    rule: Any
    """An http rule (the model's HTTPRoute) with the root's matches and defaults merged in."""
    namespace: str
    """Where the rule's destination hosts resolve (the delegate's namespace for delegated rules)."""
    name: str
    """The rule's route name when it has none of its own."""
    field: str
    """Where it comes from, for error messages: `http[1]` or `http[1]<-ns/delegate.http[0]`."""


def expand(vs: Any, lookup: DelegateLookup | None) -> list[ExpandedRule]:
    """The http rules of `vs` with every delegate rule expanded (order kept)."""
    ns = vs.metadata.namespace or "default"
    out = []
    for i, rule in enumerate(items(vs.spec, "http")):
        default_name = f"{vs.metadata.name}.{i}"
        ref = attr(rule, "delegate")
        if ref is None:
            out.append(ExpandedRule(rule, ns, default_name, f"http[{i}]"))
            continue
        target_ns = attr(ref, "namespace") or ns
        target = lookup(target_ns, attr(ref, "name", default="")) if lookup is not None else None
        if target is None or items(target.spec, "hosts") or not visible(items(target.spec, "export_to"), target_ns, ns):
            continue
        for j, sub in enumerate(items(target.spec, "http")):
            if attr(sub, "delegate") is not None:
                continue  # one level of delegation only
            merged = merge_rule(rule, sub)
            if merged is not None:
                out.append(ExpandedRule(merged, target_ns, f"{target.metadata.name}.{j}",
                                        f"http[{i}]<-{target_ns}/{target.metadata.name}.http[{j}]"))
    return out


def merge_rule(root: Any, leaf: Any) -> Any | None:
    """The delegate rule `leaf` under `root`; None when its matches conflict with the root's."""
    matches = merge_matches(items(root, "match"), items(leaf, "match"))
    if matches is None:
        return None
    changes: dict[str, Any] = {"match": matches, "delegate": None}
    root_name, leaf_name = attr(root, "name"), attr(leaf, "name")
    if root_name and leaf_name:
        changes["name"] = f"{root_name}-{leaf_name}"
    elif root_name:
        changes["name"] = root_name
    for name in _INHERITED:
        value = getattr(leaf, name, None)
        if (value is None or value == ()) and getattr(root, name, None) not in (None, ()):
            changes[name] = getattr(root, name)
    return replace(leaf, **changes)


def merge_matches(root: tuple[Any, ...], leaf: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if not root:
        return leaf
    if not leaf:
        return root
    out = []
    for sub in leaf:
        fits = [replace_match(r, sub) for r in root if not conflicts(r, sub)]
        if not fits:
            return None
        out += fits
    return tuple(out)


def replace_match(root: Any, leaf: Any) -> Any:
    changes: dict[str, Any] = {}
    root_name, leaf_name = attr(root, "name"), attr(leaf, "name")
    if root_name and leaf_name:
        changes["name"] = f"{root_name}-{leaf_name}"
    elif root_name:
        changes["name"] = root_name
    for name in ("uri", "scheme", "method", "authority", "port", "source_namespace", "stat_prefix"):
        if getattr(leaf, name, None) is None and getattr(root, name, None) is not None:
            changes[name] = getattr(root, name)
    for name in ("headers", "without_headers", "query_params", "source_labels"):
        changes[name] = {**mapping(root, name), **mapping(leaf, name)}
    if not items(leaf, "gateways") and items(root, "gateways"):
        changes["gateways"] = items(root, "gateways")
    return replace(leaf, **changes)


def conflicts(root: Any, leaf: Any) -> bool:
    """Istio's `hasConflict`: whether `leaf` cannot be a subset of `root`."""
    for name in ("uri", "scheme", "method", "authority"):
        if string_conflict(attr(root, name), attr(leaf, name)):
            return True
    for name in ("headers", "without_headers", "query_params"):
        mine = mapping(root, name)
        if any(string_conflict(mine.get(k), v) for k, v in mapping(leaf, name).items()):
            return True
    if bool(attr(root, "ignore_uri_case", default=False)) != bool(attr(leaf, "ignore_uri_case", default=False)):
        return True
    root_port, leaf_port = attr(root, "port"), attr(leaf, "port")
    if root_port and leaf_port and root_port != leaf_port:
        return True
    root_ns = attr(root, "source_namespace")
    if root_ns and attr(leaf, "source_namespace") != root_ns:
        return True
    root_labels = mapping(root, "source_labels")
    if any(k in root_labels and root_labels[k] != v for k, v in mapping(leaf, "source_labels").items()):
        return True
    root_gw, leaf_gw = items(root, "gateways"), items(leaf, "gateways")
    return bool(root_gw and leaf_gw and not set(leaf_gw) <= set(root_gw))


def string_conflict(root: Any, leaf: Any) -> bool:
    """Istio's `stringMatchConflict` (unset on either side never conflicts)."""
    if root is None or leaf is None:
        return False
    r_exact, r_prefix, r_regex = attr(root, "exact"), attr(root, "prefix"), attr(root, "regex")
    l_exact, l_prefix, l_regex = attr(leaf, "exact"), attr(leaf, "prefix"), attr(leaf, "regex")
    if r_regex and (l_regex or l_prefix or l_exact):
        return True
    if l_regex and (r_regex or r_prefix or r_exact):
        return True
    if r_exact and (l_prefix or l_exact != r_exact):
        return True
    if r_prefix:
        if l_prefix and not l_prefix.startswith(r_prefix):
            return True
        if l_exact and not l_exact.startswith(r_prefix):
            return True
    return False
