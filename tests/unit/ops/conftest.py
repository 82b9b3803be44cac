from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.ops.harness import Ops


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Ops]:
    o = await Ops(tmp_path).start()
    yield o
    o.svc.stop_waiting()
