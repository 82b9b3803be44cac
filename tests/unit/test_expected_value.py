"""Expected-value scoring (``[campaigns.X.scoring] mode = "expected_value"``): the formula
against a brute-force reference, the rebuild (numpy) against placement (one record at a
time), where a quote comes from, and the config's checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextcall.config import load
from nextcall.core.engine import Engine, ready_groups, ready_quotes
from nextcall.core.errors import ConfigError
from nextcall.core.keys import pool_key, score_q
from nextcall.core.model import Campaign, FieldSpec, Interval, ResultCode, Scoring
from nextcall.core.records import Quote, Record
from nextcall.core.results import Disposition, decide
from nextcall.core.scoring import (
    pool_score,
    quote_from_data,
    quote_from_fields,
    score_terms,
)

EV = Scoring(priority=100.0, contact=10.0, attempt=-1.0, max_attempt_penalty=10,
             mode="expected_value", value_field="fields.amount", chance_field="fields.kans",
             value=0.01)
T0 = 1_781_600_400.0  # a Tuesday 09:00 UTC
ALWAYS = tuple((Interval(0, 1440),) for _ in range(7))


def reference(w: Scoring, priority: int, best_cp: int, attempts: int,
              quote: Quote | None) -> float:
    """The documented formula, written out independently of ``nextcall.core.scoring``."""
    address = (w.priority * priority + w.contact * max(best_cp - 1, 0)
               + w.attempt * min(attempts, w.max_attempt_penalty))
    if w.mode != "expected_value" or quote is None:
        return address
    return address + w.value * max(1 + priority, 0) * (quote.value * quote.chance / 100)


@pytest.mark.parametrize(("priority", "best_cp", "attempts", "quote", "want"), [
    (0, 0, 0, None, 0.0),  # no quote: the address score alone
    (0, 4, 2, Quote(1000.0, 50.0), 28 + 0.01 * 500),
    (1, 4, 2, Quote(1000.0, 50.0), 128 + 0.01 * 2 * 500),  # priority doubles the value
    (-1, 0, 0, Quote(1000.0, 50.0), -100.0),  # priority -1: the value is ignored
    (0, 0, 30, Quote(20000.0, 100.0), -10 + 200.0),
    (0, 6, 0, Quote(5000.0, 0.0), 50.0),  # no chance: nothing expected
])
def test_formula_table(priority: int, best_cp: int, attempts: int, quote: Quote | None,
                       want: float) -> None:
    assert pool_score(EV, priority, best_cp, attempts, quote) == pytest.approx(want)
    terms = score_terms(EV, priority, best_cp, attempts, quote)
    assert terms.score == pytest.approx(want)
    assert terms.address + terms.value_term == terms.score
    assert terms.to_json()["mode"] == "expected_value"


def test_address_mode_ignores_quotes() -> None:
    w = Scoring()
    assert pool_score(w, 2, 4, 1, Quote(1e6, 100.0)) == pool_score(w, 2, 4, 1) == 214.0
    assert score_terms(w, 2, 4, 1, Quote(1e6, 100.0)).value_term == 0.0


weights = st.builds(
    Scoring, st.sampled_from((0.0, 1.0, 100.0, 3.5)), st.sampled_from((0.0, 5.0, 10.0)),
    st.sampled_from((0.0, -1.0, -0.5)), st.integers(0, 12),
    st.sampled_from(("address", "expected_value")), st.just("fields.amount"),
    st.just("fields.kans"), st.sampled_from((0.0, 0.01, 1.0, 0.333)))
quotes = st.one_of(st.none(), st.builds(
    Quote, st.floats(0, 1e7, allow_nan=False).map(lambda v: round(v, 2)),
    st.floats(0, 100, allow_nan=False)))
specs = st.tuples(st.integers(-3, 50), st.integers(0, 9), st.integers(0, 40), quotes,
                  st.sampled_from((0.0, -60.0, 30.0)))


def _records(specs_: list[tuple[int, int, int, Quote | None, float]]) -> list[Record]:
    return [Record(i + 1, f"r{i + 1}", "c", "l", [[f"+3120{i:07d}", "active"]], "UTC", prio,
                   "{}", due_at=T0 + due, attempts=att, best_cp=cp, quote=q)
            for i, (prio, cp, att, q, due) in enumerate(specs_)]


def _engine(w: Scoring) -> Engine:
    return Engine({"c": Campaign("c", {}, window=ALWAYS, legal_window=Interval(0, 1440),
                                 scoring=w)})


@settings(max_examples=150, deadline=None)
@given(w=weights, specs_=st.lists(specs, min_size=1, max_size=25))
def test_rebuild_scores_as_placement_does(w: Scoring, specs_: list[tuple[int, int, int,
                                                                          Quote | None,
                                                                          float]]) -> None:
    """The numpy rebuild and one-at-a-time placement give every record the same score
    (bit for bit) and so the same pool key; both match the reference; and the pool hands
    records out in the reference order."""
    recs = _records(specs_)
    bulk, one = _engine(w), _engine(w)
    bulk.bulk_load(*ready_groups(recs), T0, ready_quotes(recs))
    for rec in _records(specs_):
        one.add(rec, T0)
    for rec in recs:
        a, b = bulk.c_score[rec.rid], one.c_score[rec.rid]
        assert a == b, (rec.rid, a, b)
        ref = reference(w, rec.priority, rec.best_cp, rec.attempts, rec.quote)
        assert a == ref, (rec.rid, a, ref)
        assert pool_key(a, rec.due_at, rec.rid, 0) == pool_key(b, rec.due_at, rec.rid, 0)
    due = [r for r in recs if r.due_at <= T0]
    want = sorted(due, key=lambda r: (score_q(bulk.c_score[r.rid]), r.due_at, r.rid))
    got = [lz.record.rid for lz in bulk.next("a", ("c",), (), len(due) + 1, 0, T0)]
    assert got == [r.rid for r in want]
    # and the terms explain shows add up to the score the engine orders by
    for rec in recs:
        terms = one.score_terms(rec.rid)
        assert terms is not None and terms.score == pytest.approx(one.c_score[rec.rid])


def test_reload_rescoring_matches_placement() -> None:
    """Turning expected-value scoring on by a reload rescores quoted records like a
    placement would (``Engine.scores`` plans it in numpy)."""
    recs = _records([(0, 4, 2, Quote(1000.0, 50.0), 0.0), (1, 0, 0, None, 0.0),
                     (2, 6, 1, Quote(99.99, 12.5), 0.0)])
    e = _engine(Scoring())
    e.bulk_load(*ready_groups(recs), T0, ready_quotes(recs))
    rids, _, planned = e.scores("c", EV)
    e.apply_campaigns({"c": Campaign("c", {}, window=ALWAYS, scoring=EV)}, T0)
    assert [e.c_score[r] for r in rids.tolist()] == planned.tolist()
    assert e.c_score[1] == pytest.approx(28 + 5.0)


# --------------------------------------------------------------------- quote sources
def test_quote_from_disposition_fields() -> None:
    assert quote_from_fields(EV, {"amount": 1500.0, "kans": 40}) == Quote(1500.0, 40.0)
    assert quote_from_fields(EV, {"amount": 1500.0}) == Quote(1500.0, 100.0)
    assert quote_from_fields(EV, {"kans": 40}) is None  # no value: the quote stays
    assert quote_from_fields(Scoring(), {"amount": 1500.0}) is None  # address mode


def test_quote_from_data() -> None:
    w = Scoring(mode="expected_value", value_field="data.quote_value",
                chance_field="data.quote_chance")
    assert quote_from_data(w, '{"quote_value": "2500,50", "quote_chance": 30}') == \
        Quote(2500.5, 30.0)
    assert quote_from_data(w, '{"quote_value": 100, "quote_chance": 250}') == \
        Quote(100.0, 100.0)  # clamped to 0-100 %
    assert quote_from_data(w, '{"quote_value": -5}') == Quote(0.0, 100.0)
    for data in ('{"quote_value": "n/a"}', '{"other": 1}', "[1]", "not json", None,
                 '{"quote_value": true}'):
        assert quote_from_data(w, data) is None, data
    assert quote_from_data(EV, '{"amount": 1}') is None  # EV reads fields, not data


def test_decide_carries_the_quote_only_where_the_campaign_asks() -> None:
    rc = ResultCode("QUOTE", "quote", "retry", delay_s=60,
                    fields=(FieldSpec("amount", "money", required=True),
                            FieldSpec("kans", "percent")))
    rec = Record(1, "r1", "c", "l", [["+31201234567", "active"]], "UTC", 0, "{}",
                 due_at=T0)
    d = Disposition(code="QUOTE", agent="a", phone_idx=0,
                    fields={"amount": 1234.567, "kans": 25})
    ev = Campaign("c", {"QUOTE": rc}, window=ALWAYS, scoring=EV)
    assert decide(rec, ev, d, T0).quote == Quote(1234.57, 25.0)  # money: to the cent
    plain = Campaign("c", {"QUOTE": rc}, window=ALWAYS)
    assert decide(rec, plain, d, T0).quote is None


# --------------------------------------------------------------------- config
def _config(tmp: Path, scoring: str, field_type: str = "money") -> Path:
    (tmp / "main.toml").write_text(textwrap.dedent(f"""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "Q"
        action = "retry"
        [[resultsets.s.codes.fields]]
        name = "waarde"
        type = "{field_type}"
        [campaigns.x]
        resultset = "s"
        [campaigns.x.scoring]
    """) + textwrap.dedent(scoring))
    return tmp / "main.toml"


def test_config_expresses_expected_value_scoring(tmp_path: Path) -> None:
    s = load(_config(tmp_path, """
        mode = "expected_value"
        value_field = "fields.waarde"
        value = 0.5
    """))
    w = s.campaigns["x"].scoring
    assert (w.mode, w.value_field, w.chance_field, w.value) == \
        ("expected_value", "fields.waarde", "", 0.5)


@pytest.mark.parametrize(("scoring", "field_type", "where", "message"), [
    ('mode = "expected_value"', "money", "scoring", "needs value_field"),
    ('value_field = "data.v"', "money", "scoring", 'value_field needs mode = "expected_value"'),
    ('mode = "expected_value"\nvalue_field = "waarde"', "money", "scoring",
     'value_field must be "data.KEY" or "fields.NAME"'),
    ('mode = "expected_value"\nvalue_field = "data.v"\nchance_field = "fields.waarde"',
     "money", "scoring", "chance_field must come from the same place as value_field"),
    ('mode = "expected_value"\nvalue_field = "fields.nope"', "money",
     "scoring.value_field", "no result code of the campaign's set has a field 'nope'"),
    ('mode = "expected_value"\nvalue_field = "fields.waarde"', "date",
     "scoring.value_field", "field 'waarde' must be a number"),
    ('mode = "best"', "money", "scoring.mode", "Input should be"),
    ('mode = "expected_value"\nvalue_field = "data.v"\nvalue = -1', "money", "scoring.value",
     "greater than or equal to 0"),
])
def test_config_problems_name_the_field(tmp_path: Path, scoring: str, field_type: str,
                                        where: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(_config(tmp_path, scoring, field_type))
    text = "\n".join(f"{w}: {m}" for w, m in exc.value.problems)
    assert f"campaigns.x.{where}: " in text and message in text, text


def test_shipped_sales_phase_scores_by_the_quote() -> None:
    s = load(Path(__file__).resolve().parents[2] / "config" / "nextcall.toml")
    w = s.campaigns["callmonkey-sales"].scoring
    assert (w.mode, w.value_field, w.chance_field) == \
        ("expected_value", "fields.offerte_waarde", "fields.kans")
    assert s.campaigns["callmonkey-telemarketing"].scoring.mode == "address"
