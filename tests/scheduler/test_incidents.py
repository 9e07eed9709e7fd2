"""The incident state machine on real PostGIS: site_status written round by round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.errors import InvalidInput, NotFound
from core.settings import Settings
from results.incidents import (
    LOCK_SQL,
    EvaluationLeft,
    IncidentChanges,
    acknowledge_incident,
    evaluate_incidents,
    evaluate_incidents_if_due,
    get_incident,
    incident_members,
    last_evaluation,
    list_incidents,
)
from results.maintenance import add_window, list_windows, remove_window, update_window
from tests.scheduler.helpers import add_site, record_round

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"incident_failures": 3, "flap_changes": 4, "flap_window_s": 3600}
    )


def _round(engine: Engine, cfg: Settings, n: int, states: dict[int, str]) -> IncidentChanges:
    at = T0 + n * STEP
    with engine.begin() as conn:
        record_round(conn, states, at)
        return evaluate_incidents(conn, cfg, now=at + timedelta(seconds=30))


def _sites(engine: Engine, n: int, mun: str = "09015", prefix: str = "S", **kw) -> list[int]:
    with engine.begin() as conn:
        return [add_site(conn, f"{prefix}{i}", mun=mun, **kw) for i in range(n)]


def _bystanders(engine: Engine, n: int, mun: str) -> None:
    """Healthy probed sites that keep a municipality below the grouping share."""
    ids = _sites(engine, n, mun=mun, prefix="OK")
    with engine.begin() as conn:
        record_round(conn, dict.fromkeys(ids, "up"), T0 - STEP)


def test_k_failures_open_one_incident_and_the_first_success_closes_it(
    engine: Engine, cfg: Settings
) -> None:
    a, b = _sites(engine, 2, mun="14039")
    _bystanders(engine, 6, "14039")  # keep the municipality below 50 % down
    _round(engine, cfg, 0, {a: "up", b: "up"})
    assert _round(engine, cfg, 1, {a: "down", b: "up"}).opened == 0
    assert _round(engine, cfg, 2, {a: "down", b: "degraded"}).opened == 0
    changes = _round(engine, cfg, 3, {a: "down", b: "up"})
    assert changes.opened_site == 1 and changes.opened == 1
    assert _round(engine, cfg, 4, {a: "down", b: "up"}).opened == 0  # no duplicate
    with engine.connect() as conn:
        (inc,) = list_incidents(conn)
    assert inc.site_id == a and inc.cause == "failures" and inc.status == "open"
    assert inc.started_at == T0 + 1 * STEP  # the first failed round
    assert inc.failures_at_open == 3 and inc.last_error == "timeout"
    assert inc.site_key == "S0" and inc.municipality and inc.state_name == "Jalisco"

    # degraded (answers, but not right) is still a failure: the incident stays open
    assert _round(engine, cfg, 5, {a: "degraded", b: "up"}).closed == 0
    changes = _round(engine, cfg, 6, {a: "up", b: "up"})  # the first success
    assert changes.closed_recovered == 1
    with engine.connect() as conn:
        closed = get_incident(conn, inc.id)
    assert closed.status == "closed" and closed.close_reason == "recovered"
    assert closed.closed_at == T0 + 6 * STEP
    assert closed.duration_s == (5 * STEP).total_seconds()
    # a new failure streak (degraded rounds count) opens a new incident
    for n, st in ((7, "degraded"), (8, "down"), (9, "degraded")):
        _round(engine, cfg, n, {a: st, b: "up"})
    with engine.connect() as conn:
        assert [i.started_at for i in list_incidents(conn)] == [T0 + 7 * STEP]
        assert len(list_incidents(conn, status="all")) == 2


def test_a_maintenance_window_suppresses_incidents_until_it_ends(
    engine: Engine, cfg: Settings
) -> None:
    site, by_mun, by_prov, other = _sites(engine, 4, mun="14039")
    _bystanders(engine, 8, "14039")
    with engine.begin() as conn:
        conn.execute(text("UPDATE sites SET provider = 'Altán' WHERE id = :i"), {"i": by_prov})
        conn.execute(text("UPDATE sites SET mun_cvegeo = '14120' WHERE id = :i"), {"i": by_mun})
        end = T0 + 6 * STEP
        add_window(
            conn,
            scope="site",
            target="S0",
            starts_at=T0,
            ends_at=end,
            reason="router swap",
            created_by="ana",
        )
        add_window(
            conn,
            scope="municipality",
            target="14120",
            starts_at=T0,
            ends_at=end,
            reason="power works",
            created_by="ana",
        )
        add_window(
            conn,
            scope="provider",
            target="altán",
            starts_at=T0,
            ends_at=end,
            reason="core upgrade",
            created_by="ana",
        )
        assert len(list_windows(conn, now=T0)) == 3
        assert [w.target for w in list_windows(conn, now=T0, site_key="S2")] == ["Altán"]
    down = {site: "down", by_mun: "down", by_prov: "down", other: "down"}
    for n in range(1, 4):
        changes = _round(engine, cfg, n, down)
    assert changes.opened_site == 1 and changes.suppressed == 3
    with engine.connect() as conn:
        assert [i.site_id for i in list_incidents(conn)] == [other]
    # the windows end at round 6 with the sites still down: incidents open then
    assert _round(engine, cfg, 5, down).opened == 0
    changes = _round(engine, cfg, 6, down)
    assert changes.opened_site == 3 and changes.suppressed == 0
    with engine.connect() as conn:
        incs = {i.site_id: i for i in list_incidents(conn)}
    assert set(incs) == {site, by_mun, by_prov, other}
    assert incs[site].started_at == T0 + STEP  # still dated from the first failure


def test_maintenance_windows_reject_bad_input_by_field(engine: Engine) -> None:
    _sites(engine, 1)
    ok: dict[str, Any] = {"starts_at": T0, "ends_at": T0 + STEP, "reason": "x", "created_by": "ana"}
    with engine.begin() as conn:
        with pytest.raises(InvalidInput, match="scope 'state'"):
            add_window(conn, scope="state", target="09", **ok)
        with pytest.raises(NotFound, match="'NOPE'"):
            add_window(conn, scope="site", target="NOPE", **ok)
        with pytest.raises(NotFound, match="CVEGEO '99999'"):
            add_window(conn, scope="municipality", target="99999", **ok)
        with pytest.raises(NotFound, match="provider 'Nobody'"):
            add_window(conn, scope="provider", target="Nobody", **ok)
        with pytest.raises(InvalidInput, match="must be after starts_at"):
            add_window(conn, scope="site", target="S0", **{**ok, "ends_at": T0})
        with pytest.raises(InvalidInput, match="no time zone"):
            add_window(
                conn, scope="site", target="S0", **{**ok, "starts_at": T0.replace(tzinfo=None)}
            )
        with pytest.raises(InvalidInput, match="reason is empty"):
            add_window(conn, scope="site", target="S0", **{**ok, "reason": " "})
        w = add_window(conn, scope="site", target="S0", **ok)
        assert w.sites == 1 and w.active_at(T0) and not w.active_at(T0 + STEP)
        w2 = update_window(conn, w.id, ends_at=T0 + 2 * STEP, reason="longer")
        assert w2.ends_at == T0 + 2 * STEP and w2.reason == "longer"
        assert remove_window(conn, w.id).id == w.id
        with pytest.raises(NotFound):
            remove_window(conn, w.id)


def test_flapping_opens_one_incident_marked_flapping_not_many(
    engine: Engine, cfg: Settings
) -> None:
    (flappy,) = _sites(engine, 1, mun="14039")
    _bystanders(engine, 8, "14039")
    opened = 0
    for n in range(0, 12):  # up, down, up, down ... : never 3 failures in a row
        changes = _round(engine, cfg, n, {flappy: "down" if n % 2 else "up"})
        opened += changes.opened
        assert changes.closed == 0
    assert opened == 1
    with engine.connect() as conn:
        (inc,) = list_incidents(conn, status="all")
    assert inc.cause == "flapping" and inc.flapping and inc.flap_changes == 5
    assert inc.started_at == T0 + STEP  # the first change in the window
    # stays up: the changes age out of the hour window, then it closes as stable
    n = 12
    while True:
        changes = _round(engine, cfg, n, {flappy: "up"})
        if changes.closed:
            break
        n += 1
        assert n < 40
    with engine.connect() as conn:
        inc = get_incident(conn, inc.id)
    assert inc.close_reason == "stable" and inc.closed_at == T0 + 12 * STEP
    assert T0 + n * STEP - (T0 + 7 * STEP) >= timedelta(hours=1) - STEP


def test_an_open_incident_that_starts_flapping_is_marked_and_kept_open(
    engine: Engine, cfg: Settings
) -> None:
    (site,) = _sites(engine, 1, mun="14039")
    _bystanders(engine, 8, "14039")
    pattern = ["up", "down", "down", "down", "up", "down", "up", "down", "up"]
    closes = []
    for n, state in enumerate(pattern):
        closes.append(_round(engine, cfg, n, {site: state}).closed)
    # closed by the first success (round 4), reopened? no: 1 failure only; then flapping
    with engine.connect() as conn:
        incs = list_incidents(conn, status="all")
    assert [i.cause for i in incs] == ["flapping", "failures"]
    assert incs[1].close_reason == "recovered" and closes[4] == 1
    assert incs[0].status == "open" and incs[0].flapping


def test_half_a_municipality_down_opens_one_grouped_incident(engine: Engine, cfg: Settings) -> None:
    mun_sites = _sites(engine, 10, mun="09015")  # Cuauhtémoc: 10 active sites
    lone = _sites(engine, 4, mun="14039", prefix="G")
    up = {s: "up" for s in mun_sites + lone}
    _round(engine, cfg, 0, up)
    down = {**up, **{s: "down" for s in mun_sites[:6]}, lone[0]: "down"}
    for n in (1, 2, 3):
        changes = _round(engine, cfg, n, down)
    assert changes.opened_municipal == 1 and changes.joined_municipal == 6
    assert changes.opened_site == 1  # the lone failing site in Guadalajara
    with engine.connect() as conn:
        incs = list_incidents(conn)
        (mun_inc,) = [i for i in incs if i.kind == "municipality"]
        members = incident_members(conn, mun_inc.id)
    assert len(incs) == 2
    assert mun_inc.mun_cvegeo == "09015" and mun_inc.cause == "municipal_outage"
    assert mun_inc.sites_total == 10 and mun_inc.sites_down == 6 and mun_inc.members == 6
    assert mun_inc.started_at == T0 + STEP
    assert {m.site_id for m in members} == set(mun_sites[:6])
    # a 7th site fails later: it joins the grouped incident, no incident of its own
    down[mun_sites[6]] = "down"
    for n in (4, 5, 6):
        changes = _round(engine, cfg, n, down)
    assert changes.opened == 0
    with engine.connect() as conn:
        assert get_incident(conn, mun_inc.id).members == 7
    # all recover: the grouped incident closes with the last recovery
    changes = _round(engine, cfg, 7, up)
    assert changes.closed_municipal == 1 and changes.closed_recovered == 1
    with engine.connect() as conn:
        inc = get_incident(conn, mun_inc.id)
        assert all(m.recovered_at == T0 + 7 * STEP for m in incident_members(conn, inc.id))
    assert inc.close_reason == "recovered" and inc.duration_s == (6 * STEP).total_seconds()


def test_when_the_outage_shrinks_below_half_the_rest_become_site_incidents(
    engine: Engine, cfg: Settings
) -> None:
    s = _sites(engine, 6, mun="09015")
    down = {x: ("down" if i < 4 else "up") for i, x in enumerate(s)}
    for n in (1, 2, 3):
        _round(engine, cfg, n, down)
    down.update({s[0]: "up", s[1]: "up"})  # 2 of 6 still down: no longer an outage
    changes = _round(engine, cfg, 4, down)
    assert changes.closed_municipal == 1 and changes.opened_site == 2
    with engine.connect() as conn:
        incs = list_incidents(conn, status="all")
    (mun,) = [i for i in incs if i.kind == "municipality"]
    assert mun.close_reason == "outage_over"
    sites = sorted((i.site_id, i.started_at) for i in incs if i.kind == "site")
    assert sites == [(s[2], T0 + STEP), (s[3], T0 + STEP)]


def test_retired_sites_close_their_incidents_and_acknowledgement(
    engine: Engine, cfg: Settings
) -> None:
    (site,) = _sites(engine, 1, mun="14039")
    _bystanders(engine, 6, "14039")
    for n in (1, 2, 3):
        _round(engine, cfg, n, {site: "down"})
    with engine.begin() as conn:
        (inc,) = list_incidents(conn)
        acked = acknowledge_incident(conn, inc.id, by="luis", now=T0, comment="crew sent")
        assert acked.acknowledged_by == "luis" and acked.comment == "crew sent"
        again = acknowledge_incident(conn, inc.id, by="eva", now=T0 + STEP, comment="on site")
        assert again.acknowledged_by == "luis" and again.comment == "on site"
        with pytest.raises(InvalidInput, match="by is empty"):
            acknowledge_incident(conn, inc.id, by=" ", now=T0)
        with pytest.raises(NotFound, match="12345"):
            acknowledge_incident(conn, 12345, by="x", now=T0)
        conn.execute(text("UPDATE sites SET status = 'retired' WHERE id = :i"), {"i": site})
    assert _round(engine, cfg, 4, {site: "down"}).closed_inactive == 1
    with engine.connect() as conn:
        assert get_incident(conn, inc.id).close_reason == "site_inactive"
        assert list_incidents(conn) == []


def test_an_evaluation_running_elsewhere_is_not_waited_for_and_the_next_covers_the_round(
    engine: Engine, cfg: Settings
) -> None:
    """A batch leaves its results to the next evaluation instead of queueing behind one: that
    one reads every site's current state, so it opens what this round's failures call for."""
    a = _sites(engine, 1, mun="14039")[0]
    _bystanders(engine, 6, "14039")
    for n in range(2):
        _round(engine, cfg, n, {a: "down"})
    with engine.begin() as conn:
        record_round(conn, {a: "down"}, T0 + 2 * STEP)  # the third failure: opens at next eval
    with engine.connect() as other:
        other.execute(text(LOCK_SQL))  # an evaluation in progress elsewhere
        began = datetime.now(UTC)
        with engine.begin() as conn:
            skipped = evaluate_incidents_if_due(conn, cfg, now=T0 + 2 * STEP)
        assert skipped == EvaluationLeft("one was running")
        assert (datetime.now(UTC) - began).total_seconds() < 2  # did not wait for the lock
        other.rollback()
    with engine.begin() as conn:
        changes = evaluate_incidents_if_due(conn, cfg, now=T0 + 2 * STEP + STEP / 2)
    assert isinstance(changes, IncidentChanges) and changes.opened_site == 1


def test_batches_space_evaluations_out_by_the_gap_and_the_next_one_covers_the_skipped(
    engine: Engine, cfg: Settings
) -> None:
    """An evaluation younger than incident_evaluation_gap_s is not repeated; the first one
    after the gap opens what the skipped ones would have; 0 evaluates every time."""
    a = _sites(engine, 1, mun="14039")[0]
    _bystanders(engine, 6, "14039")
    spaced = cfg.model_copy(update={"incident_evaluation_gap_s": 15.0})
    for n in range(2):
        _round(engine, cfg, n, {a: "down"})  # evaluated at T0 + n·STEP + 30 s
    last = T0 + STEP + timedelta(seconds=30)
    with engine.begin() as conn:
        recorded = last_evaluation(conn)
        assert recorded is not None and recorded.started_at == last and recorded.seconds > 0
        record_round(conn, {a: "down"}, last + timedelta(seconds=5))  # the third failure
    with engine.begin() as conn:
        left = evaluate_incidents_if_due(conn, spaced, now=last + timedelta(seconds=10))
    assert left == EvaluationLeft("the last ran 10 s ago; one every 15 s at most")
    with engine.begin() as conn:
        assert list_incidents(conn) == []
        due = evaluate_incidents_if_due(conn, spaced, now=last + timedelta(seconds=16))
    assert isinstance(due, IncidentChanges) and due.opened_site == 1
    with engine.begin() as conn:
        recorded = last_evaluation(conn)
        assert recorded is not None
        assert (recorded.started_at, recorded.opened) == (last + timedelta(seconds=16), 1)
        every = cfg.model_copy(update={"incident_evaluation_gap_s": 0.0})
        assert isinstance(
            evaluate_incidents_if_due(conn, every, now=last + timedelta(seconds=17)),
            IncidentChanges,
        )
        # A clock set back does not stop evaluations until it catches up.
        assert isinstance(evaluate_incidents_if_due(conn, spaced, now=last), IncidentChanges)
