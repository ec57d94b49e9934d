"""`meshlet install [--crds]` and `meshlet uninstall`: manifests for `kubectl apply -f -`.

`meshlet install --crds` prints the CRDs (meshlet.controller.model.crd, the
same as the meshlet-crds chart). `meshlet install` prints the control plane:
the Namespace, then the objects of the meshlet-control-plane chart rendered
with the values (defaults from `install_values`, `--values FILE`, `--set k=v`),
filling in the trust anchor, issuer and webhook certificate unless given.
`--values-out FILE` also writes the final values (certificates included) so a
`helm install -f FILE` gets the same result (`make install` uses this).
Nothing here talks to a cluster.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from .install_values import InstallError

# helm's install order for the kinds we emit (so `kubectl apply` creates dependencies first)
KIND_ORDER = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "Secret", "ConfigMap", "ClusterRole",
              "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment", "MutatingWebhookConfiguration")


def render_control_plane(values: dict[str, Any], namespace: str, *, version: str | None = None,
                         with_namespace: bool = True) -> list[dict[str, Any]]:
    """The control-plane objects for fully specified `values` (validated; required values set)."""
    from meshlet.controller.model.crd import meshlet_version

    from .install_manifests import control_plane, namespace_object
    from .install_scope import ValuesScope
    from .install_values import REQUIRED, validate

    validate(values)
    version = version or meshlet_version()
    scope = ValuesScope(values, namespace, version, REQUIRED)
    docs = [d for group in control_plane(scope).values() for d in group]
    if with_namespace:
        docs.insert(0, namespace_object(namespace, version))
    return sorted(docs, key=lambda d: KIND_ORDER.index(d["kind"]) if d["kind"] in KIND_ORDER else len(KIND_ORDER))


def load_values(values_files: tuple[Path, ...], sets: tuple[str, ...]) -> dict[str, Any]:
    from .install_values import apply_sets, default_values, merge

    values = default_values()
    for f in values_files:
        try:
            loaded = yaml.safe_load(f.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InstallError(f"--values {f}: {e}") from None
        if not isinstance(loaded, dict):
            raise InstallError(f"--values {f}: expected a map of values")
        values = merge(values, loaded)
    return apply_sets(values, sets)


def dump_all(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, width=10_000) for d in docs)


@click.command()
@click.option("--crds", is_flag=True, help="Print the CustomResourceDefinitions instead of the control plane.")
@click.option("-n", "--namespace", default="meshlet", show_default=True, help="Control-plane namespace.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a chart value (repeatable), like helm.")
@click.option("-f", "--values", "values_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A values YAML file (repeatable; later files win; --set wins over files).")
@click.option("--identity-trust-anchors-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Bring your own trust anchors (PEM).")
@click.option("--identity-issuer-certificate-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Bring your own issuer certificate (PEM, ECDSA P-256 CA signed by an anchor).")
@click.option("--identity-issuer-key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Bring your own issuer key (PEM, EC P-256).")
@click.option("--values-out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the final values (generated certificates included) here, for helm.")
def install(crds: bool, namespace: str, sets: tuple[str, ...], values_files: tuple[Path, ...],
            identity_trust_anchors_file: Path | None, identity_issuer_certificate_file: Path | None,
            identity_issuer_key_file: Path | None, values_out: Path | None) -> None:
    """Print the manifests to install meshlet on Kubernetes (pipe into `kubectl apply -f -`).

    \b
    meshlet install --crds | kubectl apply -f -
    meshlet install | kubectl apply -f -
    meshlet check --kubeconfig ~/.kube/config
    """
    if crds:
        from meshlet.controller.model.crd import crd_yaml

        click.echo(crd_yaml(), nl=False)
        return
    from .install_certs import IdentityFiles, fill_certificates

    files = IdentityFiles(identity_trust_anchors_file, identity_issuer_certificate_file, identity_issuer_key_file)
    try:
        values = fill_certificates(load_values(values_files, sets), namespace, files)
        docs = render_control_plane(values, namespace)
    except InstallError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if values_out is not None:
        values_out.write_text(yaml.safe_dump(values, sort_keys=False))
        values_out.chmod(0o600)
    click.echo(dump_all(docs), nl=False)


@click.command()
@click.option("-n", "--namespace", default="meshlet", show_default=True, help="Control-plane namespace.")
def uninstall(namespace: str) -> None:
    """Print what to delete to remove meshlet (review it, then pipe into `kubectl delete -f -`).

    The CRDs are listed last and commented out: deleting them deletes every
    VirtualService, DestinationRule, ... in the cluster.
    """
    from meshlet.controller.model.crd import meshlet_version, render_crds

    from .install_manifests import COMPONENTS, cluster_role_name, webhook_config_name
    from .install_scope import ValuesScope

    scope = ValuesScope({}, namespace, meshlet_version())
    refs: list[dict[str, Any]] = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": webhook_config_name(scope)}}]
    for c in COMPONENTS:
        name = cluster_role_name(scope, c)
        refs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name}})
        refs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}})
    refs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    click.echo(dump_all(refs), nl=False)
    click.echo("# The CRDs are kept (deleting them deletes every mesh resource). To remove them too:")
    for crd in render_crds():
        click.echo(f"#   kubectl delete crd {crd['metadata']['name']}")
