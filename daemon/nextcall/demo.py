"""Synthetic records for the demo campaign, spread over timezones around the world so
that some are inside their calling window whatever the hour of the first ``make run``."""

from __future__ import annotations

import random
import time

import orjson
import phonenumbers
from rich.console import Console
from rich.progress import Progress

from .config import Settings
from .core.changes import RecordImported
from .storage import sql as S

#: (region, IANA zone) pairs about two hours apart
REGIONS = [("US", "Pacific/Honolulu"), ("US", "America/Los_Angeles"),
           ("US", "America/Chicago"), ("US", "America/New_York"), ("BR", "America/Sao_Paulo"),
           ("GB", "Europe/London"), ("NL", "Europe/Amsterdam"), ("ZA", "Africa/Johannesburg"),
           ("AE", "Asia/Dubai"), ("IN", "Asia/Kolkata"), ("SG", "Asia/Singapore"),
           ("JP", "Asia/Tokyo"), ("AU", "Australia/Sydney"), ("NZ", "Pacific/Auckland")]
_US_AREA = {"Pacific/Honolulu": "808", "America/Los_Angeles": "213",
            "America/Chicago": "312", "America/New_York": "212"}
FIRST = ["Anna", "Bram", "Chloe", "Daan", "Eva", "Finn", "Grace", "Hugo", "Iris", "Jonas"]
LAST = ["de Vries", "Jansen", "Smith", "Bakker", "Visser", "Khan", "Tanaka", "Silva"]


def _number(region: str, zone: str, rng: random.Random) -> str:
    example = phonenumbers.example_number_for_type(region,
                                                   phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None, region
    nsn = str(example.national_number)
    for _ in range(200):
        if region == "US":
            cand = _US_AREA[zone] + f"{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        else:
            cand = nsn[:-4] + f"{rng.randint(0, 9999):04d}"
        num = phonenumbers.parse(cand, region)
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def demo_rows(campaign: str, count: int, start_rid: int, seed: int = 7
              ) -> list[RecordImported]:
    """``count`` synthetic records, as the changes that insert them."""
    rng = random.Random(seed)
    now = time.time()
    rows = []
    for i in range(count):
        region, zone = REGIONS[i % len(REGIONS)]
        phones = [[_number(region, zone, rng), "active"]]
        if rng.random() < 0.3:
            phones.append([_number(region, zone, rng), "active"])
        data = {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "donor_since": 2000 + rng.randint(0, 25)}
        rows.append(RecordImported(
            rid=start_rid + i, id=f"{campaign}-{i + 1:06d}", campaign=campaign,
            list="demo-list", phones=phones, timezone=zone,
            priority=rng.choice((0, 0, 0, 1, 2)), data=orjson.dumps(data).decode(),
            state="ready", reason=None, due_at=0.0, attempts=0, owner=None,
            team=rng.choice(("red", "blue")), best_cp=0, phone_idx=0, callback=None,
            at=now))
    return rows


async def load_demo(settings: Settings, campaign: str, count: int,
                    console: Console | None = None) -> int:
    """Insert the demo records unless the campaign already has them; returns how many."""
    store = S.SqlStore(settings.daemon.database)
    await store.open()
    try:
        await store.migrate()
        if await store.existing_ids([f"{campaign}-000001"]):
            return 0
        rows = demo_rows(campaign, count, await store.max_rid() + 1)
        with Progress(console=console, transient=False) as bar:
            task = bar.add_task(f"loading demo campaign {campaign!r}", total=len(rows))
            for k in range(0, len(rows), 1000):
                chunk = rows[k:k + 1000]
                await store.write(chunk)
                bar.advance(task, len(chunk))
        return len(rows)
    finally:
        await store.close()
