"""Logging setup: loguru to stderr and to a rotating file in the node's data directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from loguru import logger

LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[node]} | {extra[who]: <16} | {message}"


def _who(record: Any) -> None:
    """Name the source: the actor, else the logic's topic, else the endpoint."""
    extra = record["extra"]
    actor = extra.get("actor", "-")
    extra["who"] = actor if actor != "-" else extra.get("topic") or extra.get("endpoint") or "-"


def configure_logging(node: str, level: str, data_dir: Path | None = None) -> None:
    logger.remove()
    logger.configure(extra={"node": node, "actor": "-", "who": "-"}, patcher=_who)
    logger.add(sys.stderr, level=level.upper(), format=LOG_FORMAT, backtrace=False, diagnose=False)
    if data_dir is not None:
        logger.add(
            data_dir / "switchover.log",
            level=level.upper(),
            format=LOG_FORMAT,
            rotation="10 MB",
            retention=5,
            backtrace=False,
            diagnose=False,
        )
