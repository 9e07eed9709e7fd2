"""Rollups against an independent pandas recomputation from the same raw rows."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from core.errors import InvalidInput
from results.rollups import (
    rollup_day,
    rollup_day_parallel,
    rollup_hour,
    rollup_hours,
    site_ranges,
)
from tests.scheduler.helpers import add_site, insert_raw_results

DAY = date(2030, 3, 14)
T0 = datetime(2030, 3, 14, 10, 0, tzinfo=UTC)


def _make_raw(engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """12 sites in 3 municipalities and 2 providers, 2 hours + 1 round of the next day."""
    rng = random.Random(7)
    with engine.begin() as conn:
        sites = []
        for i in range(12):
            mun = ["09015", "09016", "14039"][i % 3]
            prov = "Telmex" if i % 2 else "Totalplay"
            bw = None if i == 5 else float(10 * (1 + i % 4))
            sid = add_site(conn, f"R{i:02d}", mun=mun, provider=prov, bw_down=bw, bw_up=5.0)
            sites.append((sid, mun, prov, bw))
        rows: list[dict[str, object]] = []
        rounds = [T0 + timedelta(minutes=5 * k) for k in range(24)]
        rounds.append(datetime(2030, 3, 15, 0, 1, tzinfo=UTC))  # next day: not in DAY
        rounds.append(datetime(2030, 3, 14, 9, 59, 59, tzinfo=UTC))  # before the first hour
        for ts in rounds:
            rid = uuid.uuid4()
            for sid, _mun, _prov, bw in sites:
                if sid == sites[11][0] and ts.minute == 5:
                    continue  # a site missing from one round
                state = rng.choices(["up", "degraded", "down"], [0.8, 0.1, 0.1])[0]
                ok = state != "down"
                snmp_lat = round(rng.uniform(1, 80), 2) if ok else None
                in_bps = rng.uniform(0, (bw or 20) * 1e6) if ok and rng.random() > 0.1 else None
                rows.append(
                    {
                        "round_id": rid,
                        "site_id": sid,
                        "ts": ts,
                        "kind": "snmp",
                        "ok": ok,
                        "state": state,
                        "latency_ms": snmp_lat,
                        "in_bps": in_bps,
                        "out_bps": None if in_bps is None else in_bps / 3,
                    }
                )
                if sid % 4 != 0:  # some sites have no HTTP probe
                    http_ok = ok and rng.random() > 0.2
                    rows.append(
                        {
                            "round_id": rid,
                            "site_id": sid,
                            "ts": ts + timedelta(milliseconds=300),
                            "kind": "http",
                            "ok": http_ok,
                            "state": state,
                            "latency_ms": round(rng.uniform(20, 400), 2) if http_ok else None,
                            "in_bps": None,
                            "out_bps": None,
                        }
                    )
        insert_raw_results(conn, rows)
    # the expectation is computed from the rows as PostgreSQL stored them (latency is real)
    raw = _db_frame(engine, "SELECT * FROM probe_results", {})
    meta = pd.DataFrame(sites, columns=["site_id", "mun", "provider", "bw_down"])
    meta["bw_up"] = 5.0
    meta["ent"] = meta["mun"].str[:2]
    return raw, meta


def _expected_site(raw: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    out = []
    for sid, g in raw.groupby("site_id"):
        per_round = g.groupby("round_id")["state"].first()
        snmp = g[(g.kind == "snmp") & g.ok]["latency_ms"].dropna()
        http = g[(g.kind == "http") & g.ok]["latency_ms"].dropna()
        inb, outb = g["in_bps"].dropna(), g["out_bps"].dropna()
        m = meta.set_index("site_id").loc[sid]
        up = int((per_round == "up").sum())
        out.append(
            {
                "site_id": sid,
                "rounds": len(per_round),
                "up_rounds": up,
                "degraded_rounds": int((per_round == "degraded").sum()),
                "down_rounds": int((per_round == "down").sum()),
                "uptime_pct": 100.0 * up / len(per_round),
                "snmp_latency_p50_ms": snmp.quantile(0.5) if len(snmp) else np.nan,
                "snmp_latency_p95_ms": snmp.quantile(0.95) if len(snmp) else np.nan,
                "http_latency_p50_ms": http.quantile(0.5) if len(http) else np.nan,
                "http_latency_p95_ms": http.quantile(0.95) if len(http) else np.nan,
                "rate_samples": len(inb),
                "in_bps_avg": inb.mean(),
                "in_bps_p95": inb.quantile(0.95),
                "in_bps_max": inb.max(),
                "out_bps_avg": outb.mean(),
                "out_bps_p95": outb.quantile(0.95),
                "out_bps_max": outb.max(),
                "util_in_pct": 100 * inb.mean() / (m.bw_down * 1e6) if m.bw_down else np.nan,
                "util_out_pct": 100 * outb.mean() / (m.bw_up * 1e6),
            }
        )
    return pd.DataFrame(out).set_index("site_id").sort_index()


def _db_frame(engine: Engine, sql: str, params: dict[str, object]) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def _compare(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got[want.columns].astype(float)
    # latency_ms is real (float4) in probe_results: agree to float4 precision
    pd.testing.assert_frame_equal(
        got, want.astype(float), check_exact=False, rtol=1e-6, check_names=False
    )


def test_hourly_rollup_matches_pandas_and_is_idempotent(engine: Engine) -> None:
    raw, meta = _make_raw(engine)
    with engine.begin() as conn:
        first = rollup_hour(conn, T0 + timedelta(minutes=17))
    hour_raw = raw[(raw.ts >= T0) & (raw.ts < T0 + timedelta(hours=1))]
    assert first.start == T0 and first.raw_rows == len(hour_raw) and first.site_rows == 12
    sql = "SELECT * FROM rollup_site_hourly WHERE hour = :h ORDER BY site_id"
    got = _db_frame(engine, sql, {"h": T0}).set_index("site_id")
    _compare(got, _expected_site(hour_raw, meta))
    with engine.begin() as conn:
        again = rollup_hour(conn, T0)
    assert again.site_rows == 12
    second = _db_frame(engine, sql, {"h": T0}).set_index("site_id")
    pd.testing.assert_frame_equal(
        got.drop(columns="computed_at"), second.drop(columns="computed_at")
    )
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT count(*) FROM rollup_runs WHERE period='hour'"))
        assert runs.scalar_one() == 1


def test_rollup_hours_covers_each_hour_of_a_period(engine: Engine) -> None:
    raw, _ = _make_raw(engine)
    results = rollup_hours(engine, T0 - timedelta(hours=1), T0 + timedelta(hours=2))
    assert [r.start.hour for r in results] == [9, 10, 11]
    assert sum(r.raw_rows for r in results) == len(
        raw[(raw.ts >= T0 - timedelta(hours=1)) & (raw.ts < T0 + timedelta(hours=2))]
    )
    with pytest.raises(InvalidInput, match="empty"):
        rollup_hours(engine, T0, T0)
    with pytest.raises(InvalidInput, match="time zone"):
        rollup_hours(engine, T0.replace(tzinfo=None), T0 + timedelta(hours=1))


def test_daily_rollups_per_site_and_group_match_pandas(engine: Engine) -> None:
    raw, meta = _make_raw(engine)
    with engine.begin() as conn:
        result = rollup_day(conn, DAY)
        rollup_day(conn, DAY)  # idempotent: same rows, no duplicates
    day_raw = raw[
        (raw.ts >= pd.Timestamp(DAY, tz="UTC"))
        & (raw.ts < T0 + timedelta(days=1) - timedelta(hours=10))
    ]
    assert result.raw_rows == len(day_raw)
    want_site = _expected_site(day_raw, meta)
    got = _db_frame(
        engine, "SELECT * FROM rollup_site_daily WHERE day = :d ORDER BY site_id", {"d": DAY}
    ).set_index("site_id")
    _compare(got, want_site)

    groups = _db_frame(
        engine, "SELECT * FROM rollup_group_daily WHERE day = :d", {"d": DAY}
    ).set_index(["level", "key"])
    assert result.group_rows == len(groups) == 3 + 2 + 2  # municipalities, states, providers
    site = want_site.join(meta.set_index("site_id"))
    raw_m = day_raw.merge(meta, on="site_id")
    for level, col in (("municipality", "mun"), ("state", "ent"), ("provider", "provider")):
        for key, g in site.groupby(col):
            row = groups.loc[(level, key)]
            assert row.sites == len(g)
            assert row.rounds == g.rounds.sum() and row.up_rounds == g.up_rounds.sum()
            assert row.uptime_pct == pytest.approx(100 * g.up_rounds.sum() / g.rounds.sum())
            assert row.sites_with_down == (g.down_rounds > 0).sum()
            assert row.in_bps_total == pytest.approx(g.in_bps_avg.sum())
            assert row.in_bps_max == pytest.approx(g.in_bps_max.max())
            has = g[g.bw_down.notna() & g.in_bps_avg.notna()]
            assert row.util_in_pct == pytest.approx(
                100 * has.in_bps_avg.sum() / (has.bw_down.sum() * 1e6)
            )
            # group latency: percentile_cont of values in 0.5 % logarithmic buckets, which is
            # within 0.25 % of the exact percentile
            for kind in ("snmp", "http"):
                lat = raw_m[(raw_m[col] == key) & raw_m.ok & (raw_m.kind == kind)]["latency_ms"]
                bucketed = np.exp(np.rint(np.log(np.maximum(lat, 0.001)) * 200) / 200)
                for p in (50, 95):
                    got = row[f"{kind}_latency_p{p}_ms"]
                    assert got == pytest.approx(bucketed.quantile(p / 100), rel=1e-9)
                    assert got == pytest.approx(lat.quantile(p / 100), rel=0.0026)


def test_hours_and_days_with_rounds_written_after_their_rollup_are_stale(
    engine: Engine,
) -> None:
    from results.rollups import stale_days, stale_hours

    now = T0 + timedelta(hours=3, minutes=10)

    def add_round(at: datetime) -> None:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO probe_rounds (id, started_at, finished_at, kinds, sites) "
                    "VALUES (:id, :a, :b, ARRAY['snmp'], 1)"
                ),
                {"id": uuid.uuid4(), "a": at, "b": at + timedelta(seconds=5)},
            )

    _make_raw(engine)  # rows in the 09:00, 10:00 and 11:00 hours
    add_round(T0 + timedelta(minutes=3))
    add_round(T0 + timedelta(hours=1, minutes=59, seconds=58))  # ends in the next hour
    add_round(T0 + timedelta(hours=3, minutes=1))  # the current hour: not complete yet
    with engine.connect() as conn:
        assert stale_hours(conn, now) == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    rollup_hours(engine, T0, T0 + timedelta(hours=3))
    with engine.connect() as conn:
        assert stale_hours(conn, now) == [T0 + timedelta(hours=2)]  # no raw rows: not recorded
    add_round(T0 + timedelta(minutes=30))  # a spooled round of 10:00 written late
    with engine.connect() as conn:
        assert stale_hours(conn, now)[0] == T0
        assert stale_days(conn, now + timedelta(days=1)) == [DAY]
    with engine.begin() as conn:
        rollup_day(conn, DAY)
    with engine.connect() as conn:
        assert stale_days(conn, now + timedelta(days=1)) == []


def test_the_parallel_daily_rollup_writes_the_same_rows(engine: Engine) -> None:
    _make_raw(engine)
    with engine.begin() as conn:
        one = rollup_day(conn, DAY)
    sql = "SELECT * FROM rollup_site_daily ORDER BY site_id"
    gsql = "SELECT * FROM rollup_group_daily ORDER BY level, key"
    single = _db_frame(engine, sql, {}).drop(columns="computed_at")
    groups = _db_frame(engine, gsql, {}).drop(columns="computed_at")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM rollup_site_daily; DELETE FROM rollup_group_daily"))
    par = rollup_day_parallel(engine, DAY, workers=3)
    assert (par.raw_rows, par.site_rows, par.group_rows) == (
        one.raw_rows,
        one.site_rows,
        one.group_rows,
    )
    pd.testing.assert_frame_equal(single, _db_frame(engine, sql, {}).drop(columns="computed_at"))
    pd.testing.assert_frame_equal(groups, _db_frame(engine, gsql, {}).drop(columns="computed_at"))
    with engine.connect() as conn:
        ranges = site_ranges(conn, 3)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == 2**62
