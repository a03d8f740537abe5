"""Logging setup: loguru to stderr and to a rotating file in the node's data directory."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

LOG_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[node]} | {extra[actor]: <16} | {message}"
)


def configure_logging(node: str, level: str, data_dir: Path | None = None) -> None:
    logger.remove()
    logger.configure(extra={"node": node, "actor": "-"})
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
