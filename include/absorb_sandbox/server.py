"""uvicorn protocol that lets the fault injector drop a connection without answering.

ASGI gives an app no way to close the socket, so the protocol exposes its transport's ``abort``
in ``scope["extensions"]``; the middleware calls it for a ``drop`` fault.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from absorb_sandbox.middleware import ABORT_EXTENSION


class DroppableHttpToolsProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {ABORT_EXTENSION: self.transport.abort}
