"""Choosing the store from process flags (`--store local|kube`, `--kubeconfig`), without a server."""
from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from meshlet.controller.store import SqliteStore, StoreError
from meshlet.controller.store.open import StoreSettings, open_store, store_options


def test_settings_from_flags() -> None:
    assert StoreSettings.from_options("local", None, None) == StoreSettings()
    kube = StoreSettings.from_options("kube", Path("/k"), "ctx")
    assert (kube.backend, kube.kubeconfig, kube.context) == ("kube", Path("/k"), "ctx")
    assert StoreSettings.from_options("kube", None, None).describe() == "kube (in-cluster)"
    with pytest.raises(click.UsageError, match="need --store kube"):
        StoreSettings.from_options("local", Path("/k"), None)


async def test_local_uses_the_processs_own_opener(tmp_path: Path) -> None:
    store = await open_store(StoreSettings(), lambda: SqliteStore(tmp_path / "store.db"))
    try:
        assert isinstance(store, SqliteStore)
    finally:
        await store.close()


async def test_kube_with_a_missing_kubeconfig_names_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await open_store(StoreSettings("kube", tmp_path / "nope"), lambda: pytest.fail("not local"))


def test_options_parse_and_read_the_environment() -> None:
    @click.command()
    @store_options
    def cmd(store: str, kubeconfig: Path | None, kube_context: str | None) -> None:
        click.echo(StoreSettings.from_options(store, kubeconfig, kube_context).describe())

    runner = CliRunner()
    assert runner.invoke(cmd, []).output.strip() == "local"
    assert runner.invoke(cmd, ["--store", "kube", "--kubeconfig", "/x"]).output.strip() == "kube (/x)"
    assert runner.invoke(cmd, [], env={"MESHLET_STORE": "kube"}).output.strip() == "kube (in-cluster)"
    bad = runner.invoke(cmd, ["--kubeconfig", "/x"])
    assert bad.exit_code == 2 and "need --store kube" in bad.output


async def test_the_kube_store_satisfies_the_store_protocol() -> None:
    from kubernetes_asyncio import client

    from meshlet.controller.store import Store
    from meshlet.controller.store.kube import KubeStore
    from meshlet.controller.store.kube.transport import Transport

    store = KubeStore(Transport(client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))))
    try:
        assert isinstance(store, Store)
    finally:
        await store.close()
