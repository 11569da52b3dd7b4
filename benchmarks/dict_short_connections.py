"""The server's CPU per short dict connection (connect, handshake, one lookup, close), as
Dovecot's clients without `idle_msecs` (quota_clone, doveadm) make them: what accepting costs.

The dict server runs alone in a child process (`--serve PATH`); this process opens 6,000
connections, 20 at a time, and reads the child's CPU time from /proc before and after.

    .venv/bin/python benchmarks/dict_short_connections.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile

CONNECTIONS = 6000
AT_ONCE = 20


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve(path: str) -> None:
    from lookupd.dovecot.dict import start_dict_server

    await start_dict_server(f"unix:{path}", lambda: None)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def measure() -> None:
    folder = tempfile.mkdtemp()
    path = f"{folder}/dict.sock"
    server = subprocess.Popen([sys.executable, __file__, "--serve", path], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        server.stdout.readline()

        async def one() -> None:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"H2\t1\t0\t\tauth\nLshared/passdb/a@example.org\n")
            await reader.readline()
            writer.close()

        before = cpu_seconds(server.pid)
        for _ in range(0, CONNECTIONS, AT_ONCE):
            await asyncio.gather(*(one() for _ in range(AT_ONCE)))
        spent = cpu_seconds(server.pid) - before
        print(f"server CPU {spent / CONNECTIONS * 1e6:.0f} µs per short connection")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        from lookupd.listen import event_loop_factory

        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(sys.argv[2]))
    else:
        asyncio.run(measure())
