"""Connections that stop sending are closed: a client cannot hold one open by trickling bytes.

uvicorn's own keep-alive timeout ends when any byte arrives, and nothing limits how long a
request head may take. This protocol adds, per connection:
- a head deadline: the whole request head (request line and headers) must arrive within
  head_s of the connection opening or of the previous response;
- an idle limit while a body arrives: no gap of more than idle_s between its pieces.
Once a request is fully received the app has it, and no limit runs while it answers.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
BODY_IDLE_TIMEOUT_S = 30.0


class TimedH11Protocol(H11Protocol):
    head_s = HEAD_TIMEOUT_S
    idle_s = BODY_IDLE_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm(self.head_s)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(new_head=False)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(new_head=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self, new_head: bool) -> None:
        if self.transport.is_closing():
            return self._disarm()
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm(self.idle_s)  # re-armed by every piece of the body
        elif state is h11.IDLE:
            if new_head:  # waiting for the next head: its deadline starts now, not at its first byte
                self._arm(self.head_s)
        else:
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


def timed_protocol(head_s: float = HEAD_TIMEOUT_S, idle_s: float = BODY_IDLE_TIMEOUT_S) -> type[TimedH11Protocol]:
    """The protocol class with these limits (uvicorn instantiates the class itself)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"head_s": head_s, "idle_s": idle_s})
