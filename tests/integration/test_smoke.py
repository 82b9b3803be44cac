"""A first end-to-end pass through the in-process daemon."""

from tests.conftest import AsyncClient


async def test_import_next_dispose(client: AsyncClient, records) -> None:
    ans = await client.call("records.import", campaign="t", list="l", records=records(3))
    assert ans["ok"] and ans["inserted"] == 3, ans
    ans = await client.call("next", agent="a", campaigns=["t"])
    assert ans["ok"] and len(ans["leases"]) == 1
    token = ans["leases"][0]["token"]
    ans = await client.call("dispose", lease=token, code="NA")
    assert ans["ok"] and ans["state"] == "ready" and ans["attempts"] == 1
