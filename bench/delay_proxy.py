#!/usr/bin/env python3
"""A TCP proxy that delays every byte by DELAY_MS in each direction, so a
round trip through it costs about 2 * DELAY_MS more (a server in another
region). Bytes keep their order and there is no bandwidth limit: each chunk
read is stamped and written once its time has come.

    delay_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Built on asyncio's protocols, with one timer per direction at a time: the
proxy shares the machine's cores with the client and the server it stands
between, so the less CPU it takes per chunk, the less it weighs on what the
benchmarks measure (streams with a task and a queue per direction took
several milliseconds of CPU per connection).
"""
import asyncio
import collections
import sys

class Direction:
    """Chunks read on one side, written to the other once due."""

    def __init__(self, loop, delay):
        self.loop, self.delay = loop, delay
        self.pending = collections.deque()  # (due, bytes, EOF or CLOSE)
        self.timer = None
        self.sink = None  # the transport written to, once connected

    def push(self, data):
        self.pending.append((self.loop.time() + self.delay, data))
        if self.timer is None and self.sink is not None:
            self.timer = self.loop.call_at(self.pending[0][0], self.flush)

    def attach(self, sink):
        self.sink = sink
        if self.pending and self.timer is None:
            self.timer = self.loop.call_at(self.pending[0][0], self.flush)

    def flush(self):
        self.timer = None
        now = self.loop.time()
        while self.pending and self.pending[0][0] <= now + 1e-4:
            _, data = self.pending.popleft()
            if self.sink.is_closing():
                self.pending.clear()
                return
            if data is CLOSE:
                self.sink.close()
            elif data is EOF:
                if self.sink.can_write_eof():
                    self.sink.write_eof()
            else:
                self.sink.write(data)
        if self.pending:
            self.timer = self.loop.call_at(self.pending[0][0], self.flush)

EOF, CLOSE = object(), object()

class Side(asyncio.Protocol):
    """One end of a proxied connection: what it reads goes to `outgoing`,
    and so, in their turn, its end of file and its closing."""

    def __init__(self, outgoing):
        self.outgoing = outgoing
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.outgoing.push(data)

    def eof_received(self):
        self.outgoing.push(EOF)
        return True  # keep the other half open until the peer closes it

    def connection_lost(self, exc):
        self.outgoing.push(CLOSE)

def main():
    listen, host, port, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    delay = delay_ms / 1000.0
    loop = asyncio.new_event_loop()

    def accept():
        up, down = Direction(loop, delay), Direction(loop, delay)
        client = Side(up)

        async def connect():
            try:
                _, server = await loop.create_connection(lambda: Side(down), host, port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            up.attach(server.transport)
            down.attach(client.transport)

        loop.create_task(connect())
        return client

    server = loop.run_until_complete(loop.create_server(accept, "127.0.0.1", listen))
    try:
        loop.run_forever()
    finally:
        server.close()

if __name__ == "__main__":
    main()
