"""`next` + `dispose` cycles through the op handlers, the engine and the in-memory store,
for counting instructions, which the machine's load does not change:

    cd REPO && PYTHONPATH=daemon valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/cycle_instructions.py 400     # and again with 0

The difference of the two "Collected" totals, divided by 400, is the instructions of one
cycle (50 warm-up cycles run in both). Compare two versions of the code by running it
in a checkout of each.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.ops.harness import Ops, numbers  # noqa: E402

WARM_UP = 50


async def cycles(n: int) -> None:
    ops = await Ops(Path(tempfile.mkdtemp())).start()
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1000))
    for _ in range(WARM_UP + n):
        (lease,) = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"]
        await ops.ok("dispose", lease=lease["token"], code="NA")
    ops.svc.stop_waiting()


if __name__ == "__main__":
    asyncio.run(cycles(int(sys.argv[1]) if len(sys.argv) > 1 else 400))
