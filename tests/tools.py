"""External command-line tools some tests drive (promtool): skipped with the reason when
missing, a failure when ``NEXTCALL_REQUIRE_TOOLS=1`` (CI sets it), like PostgreSQL."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_TOOLS = os.environ.get("NEXTCALL_REQUIRE_TOOLS") == "1"


def require_tool(name: str, debian_package: str) -> str:
    """The path of ``name``; skips (or fails, in CI) the calling test when it is absent."""
    path = shutil.which(name)
    if path is None:
        hint = f"{name} is not installed (apt-get install {debian_package})"
        if REQUIRE_TOOLS:
            pytest.fail(f"{hint}, and NEXTCALL_REQUIRE_TOOLS=1 makes it required")
        pytest.skip(f"{hint}; set NEXTCALL_REQUIRE_TOOLS=1 to make this a failure")
    return path
