"""``switchover keys generate``: the server group keypair for CURVE (the same on both servers)."""

from __future__ import annotations

import argparse

import zmq


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="CURVE keys for the pair's endpoints")
    ops = p.add_subparsers(dest="keys_op", required=True)
    ops.add_parser("generate", help="print a new server group keypair as a [security] table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    public, secret = zmq.curve_keypair()
    print("# the server group keypair: put the same [security] table in both servers' configs")
    print("[security]")
    print("insecure = false")
    print(f'public_key = "{public.decode()}"')
    print(f'secret_key = "{secret.decode()}"')
    return 0
