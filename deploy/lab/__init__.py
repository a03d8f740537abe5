"""The network-namespace lab: servers A and B, a router/gateway and two NetTest hosts as namespaces.

``Lab(LabConfig(prefix=...)).up()`` builds it (root only), ``Faults(lab)`` cuts links and drops flows
with nftables, ``Procs(lab)`` runs processes inside the namespaces, ``lab.down()`` or
``cleanup_prefix(prefix)`` removes everything.  See :mod:`deploy.lab.topology` for the layout.

Imports point down only: ``topology`` (namespaces, links, the state file, the bookkeeping of
recorded processes) is the bottom; ``procs`` and ``faults`` build on it; ``scenario``, ``checks``,
``timeline`` and ``runner`` above them.  ``topology`` never imports ``procs`` or ``faults``
(tests/unit/test_import_layers.py checks it).

The names below are imported lazily, so ``python -m deploy.lab.topology`` runs without the runpy
warning about a module imported twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy.lab.faults import FLOW_PRESETS, DropHandle, Faults, Flow, LinkHandle, preset, require_nft
    from deploy.lab.procs import ProcInfo, Procs
    from deploy.lab.topology import (
        HOSTS,
        ROOT_ERROR,
        Lab,
        LabCommandError,
        LabConfig,
        LabError,
        LabPermissionError,
        cleanup_prefix,
        require_root,
        wait_for,
    )

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["FLOW_PRESETS", "DropHandle", "Faults", "Flow", "LinkHandle", "preset", "require_nft"],
        "deploy.lab.faults",
    ),
    **dict.fromkeys(["ProcInfo", "Procs"], "deploy.lab.procs"),
    **dict.fromkeys(
        [
            "HOSTS",
            "ROOT_ERROR",
            "Lab",
            "LabCommandError",
            "LabConfig",
            "LabError",
            "LabPermissionError",
            "cleanup_prefix",
            "require_root",
            "wait_for",
        ],
        "deploy.lab.topology",
    ),
}

__all__ = [
    "FLOW_PRESETS",
    "HOSTS",
    "ROOT_ERROR",
    "DropHandle",
    "Faults",
    "Flow",
    "Lab",
    "LabCommandError",
    "LabConfig",
    "LabError",
    "LabPermissionError",
    "LinkHandle",
    "ProcInfo",
    "Procs",
    "cleanup_prefix",
    "preset",
    "require_nft",
    "require_root",
    "wait_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deploy.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
