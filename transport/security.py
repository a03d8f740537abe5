"""Endpoint security: CURVE with the server group keypair, or plain text by explicit choice.

Callers pass a :class:`Security` to every endpoint, so switching CURVE on is a configuration
change, not a code change. Plain text is only used when ``insecure`` is set explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq


@dataclass(frozen=True)
class Security:
    insecure: bool = False
    server_public: bytes = b""
    server_secret: bytes = b""
    client_public: bytes = b""
    client_secret: bytes = b""

    @classmethod
    def plain(cls) -> Security:
        return cls(insecure=True)

    @classmethod
    def curve_group(cls, public: bytes, secret: bytes) -> Security:
        """The spec's server group keypair: identical on both servers, used as server and client key."""
        return cls(False, public, secret, public, secret)

    def validate(self) -> None:
        if self.insecure:
            return
        if not (self.server_public and self.server_secret):
            raise ValueError(
                "no CURVE keys configured: set [security] public_key/secret_key, "
                "or insecure = true to run plain text"
            )

    def apply(self, sock: zmq.Socket[bytes], server: bool) -> None:
        if self.insecure:
            return
        self.validate()
        if server:
            sock.curve_server = True
            sock.curve_secretkey = self.server_secret
            sock.curve_publickey = self.server_public
        else:
            sock.curve_serverkey = self.server_public
            sock.curve_publickey = self.client_public or self.server_public
            sock.curve_secretkey = self.client_secret or self.server_secret
