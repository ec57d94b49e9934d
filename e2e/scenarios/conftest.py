"""`--mesh-target=local|kube`: which mesh the scenarios drive (sets MESHLET_E2E_TARGET for harness.new_target).

The option exists when pytest is given e2e/scenarios (`python -m pytest e2e/scenarios --mesh-target=kube`);
elsewhere (tests/e2e imports these modules) set MESHLET_E2E_TARGET itself. Local is the default.
"""
from __future__ import annotations

import os

import pytest
from meshlet.e2e.target import TARGET_ENV, TARGET_KINDS, target_kind


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--mesh-target", choices=TARGET_KINDS, default=None,
                     help=f"mesh the e2e scenarios run against (default: ${TARGET_ENV} or local); kube uses "
                          "MESHLET_E2E_KUBECONFIG / KUBECONFIG and MESHLET_E2E_KUBE_CONTEXT")


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--mesh-target", default=None)
    if chosen:
        os.environ[TARGET_ENV] = chosen
    try:
        target_kind()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    return f"mesh target: {target_kind()}"
