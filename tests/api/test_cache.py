"""The read cache of cards and searches, against the real database's change notifications."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.auth import Role
from api.cache import ReadCache
from api.middleware import RequestRecorder
from core.settings import Settings
from tests.api.conftest import auth, scanned

CARD = "/api/sites/TST00001/card"
SEARCH = "/api/sites?bbox=-120,10,-80,35&limit=5&f=geojson"


def _cached_app(db_url: str, tmp_path: Path, engine: Engine, *, probe_lag: float) -> FastAPI:
    cfg = Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        api_key_cache_seconds=0,
        api_docs_refresh_seconds=0,
        api_cache_seconds=60,
        api_cache_probe_lag_seconds=probe_lag,
    )
    return create_app(cfg, engine=engine)


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> float:
    """Poll ``condition`` until true; return how long it took, or fail."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def cached(db_url: str, tmp_path: Path, seeded: Engine) -> Iterator[tuple[TestClient, FastAPI]]:
    """A client of an app whose read cache is on (probe lag 3 s) and listening."""
    app = _cached_app(db_url, tmp_path, seeded, probe_lag=3.0)
    with TestClient(scanned(app), raise_server_exceptions=False) as client:
        cache: ReadCache = app.state.read_cache
        _wait(lambda: cache.live)
        yield client, app


def _status(r: httpx.Response) -> str:
    return str(r.headers.get("cache-status", ""))


def test_second_read_is_the_same_response_from_the_cache(
    cached: tuple[TestClient, FastAPI], role_keys: dict[Role, str]
) -> None:
    client, _ = cached
    headers = auth(role_keys[Role.VIEWER])
    first = client.get(CARD, headers=headers)
    second = client.get(CARD, headers=headers)
    assert first.status_code == second.status_code == 200, first.text
    assert _status(first) == "conectado; fwd=miss"
    assert _status(second) == "conectado; hit"
    assert second.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in second.headers["vary"]
    assert second.content == first.content
    plain = client.get(CARD, headers={**headers, "Accept-Encoding": "identity"})
    assert _status(plain) == "conectado; hit" and "content-encoding" not in plain.headers
    assert plain.json() == first.json()

    s1 = client.get(SEARCH, headers=headers)
    s2 = client.get(SEARCH, headers=headers)
    assert s1.status_code == 200 and s1.headers["content-type"] == "application/geo+json"
    assert (_status(s1), _status(s2)) == ("conectado; fwd=miss", "conectado; hit")
    assert s2.json() == s1.json() and s1.json()["numberReturned"] == 5

    ogc = "/ogc/collections/sites/items?bbox=-120,10,-80,35&limit=3"
    o1, o2 = client.get(ogc, headers=headers), client.get(ogc, headers=headers)
    assert (_status(o1), _status(o2)) == ("conectado; fwd=miss", "conectado; hit")
    assert o2.json() == o1.json() and o1.json()["numberReturned"] == 3


def test_a_cached_response_still_needs_a_valid_key(
    cached: tuple[TestClient, FastAPI], role_keys: dict[Role, str]
) -> None:
    client, _ = cached
    assert client.get(CARD, headers=auth(role_keys[Role.VIEWER])).status_code == 200
    assert client.get(CARD).status_code == 401
    assert client.get(CARD, headers=auth("cnk_nothing_here")).status_code == 401


def test_an_edit_from_another_process_shows_at_once(
    cached: tuple[TestClient, FastAPI], seeded: Engine, role_keys: dict[Role, str]
) -> None:
    client, _ = cached
    headers = auth(role_keys[Role.VIEWER])
    client.get(CARD, headers=headers)
    assert _status(client.get(CARD, headers=headers)) == "conectado; hit"
    with seeded.begin() as conn:  # as the CLI or another API worker would
        conn.execute(text("UPDATE sites SET name = 'Renombrada' WHERE site_key = 'TST00001'"))
    took = _wait(
        lambda: client.get(CARD, headers=headers).json()["site"]["name"] == "Renombrada", 5.0
    )
    assert took < 2.0


def test_a_write_through_the_api_shows_in_the_next_read(
    cached: tuple[TestClient, FastAPI], role_keys: dict[Role, str]
) -> None:
    client, _ = cached
    headers = auth(role_keys[Role.VIEWER])
    client.get(CARD, headers=headers)
    assert _status(client.get(CARD, headers=headers)) == "conectado; hit"
    r = client.patch(
        "/api/sites/TST00001", json={"name": "Por la API"}, headers=auth(role_keys[Role.OPERATOR])
    )
    assert r.status_code == 200, r.text
    after = client.get(CARD, headers=headers)  # no wait: the worker emptied its cache
    assert after.json()["site"]["name"] == "Por la API"


def _write_probe_data(engine: Engine, app: FastAPI, since: float, *statements: str) -> None:
    """Run ``statements`` as the scheduler would; return once the worker has heard of them."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    cache: ReadCache = app.state.read_cache
    _wait(lambda: cache._probe_data_at > since, 2.0)


def test_new_probe_data_shows_within_the_probe_lag(
    cached: tuple[TestClient, FastAPI], seeded: Engine, role_keys: dict[Role, str]
) -> None:
    client, app = cached
    headers = auth(role_keys[Role.VIEWER])
    built_at = time.monotonic()  # no later than the entry's build started
    before = client.get(CARD, headers=headers).json()["status"]["latency_ms"]
    answered_at = time.monotonic()  # no earlier than the entry's build started
    _write_probe_data(
        seeded,
        app,
        built_at,
        "UPDATE site_status SET latency_ms = 4321 "
        "WHERE site_id = (SELECT id FROM sites WHERE site_key = 'TST00001')",
    )
    # Within the lag (3 s) the card built before the batch may still be served...
    if time.monotonic() - built_at < 2.5:
        kept = client.get(CARD, headers=headers)
        assert _status(kept) == "conectado; hit"
        assert kept.json()["status"]["latency_ms"] == before
    # ...and once the lag has passed it never is. (Counted from the answer: under load the
    # build may start well after the request was sent.)
    time.sleep(max(0.0, answered_at + 3.1 - time.monotonic()))
    fresh = client.get(CARD, headers=headers)
    assert _status(fresh) == "conectado; fwd=miss"
    assert fresh.json()["status"]["latency_ms"] == 4321


def test_the_schedulers_routine_statements_do_not_empty_the_cache(
    cached: tuple[TestClient, FastAPI], seeded: Engine, role_keys: dict[Role, str]
) -> None:
    # After every probe batch the incident evaluator runs its statements, most changing
    # nothing; they must not throw away every card each second or two.
    client, app = cached
    headers = auth(role_keys[Role.VIEWER])
    built_at = time.monotonic()
    client.get(CARD, headers=headers)
    _write_probe_data(
        seeded,
        app,
        built_at,
        "UPDATE incidents SET comment = comment WHERE false",
        "UPDATE incident_sites SET recovered_at = now() WHERE false",
    )
    if time.monotonic() - built_at < 2.5:
        assert _status(client.get(CARD, headers=headers)) == "conectado; hit"


def test_lost_notifications_turn_the_cache_off_until_they_return(
    cached: tuple[TestClient, FastAPI], seeded: Engine, role_keys: dict[Role, str]
) -> None:
    client, app = cached
    cache: ReadCache = app.state.read_cache
    headers = auth(role_keys[Role.VIEWER])
    client.get(CARD, headers=headers)
    assert _status(client.get(CARD, headers=headers)) == "conectado; hit"
    with seeded.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'conectado-api-cache' AND datname = current_database()"
            )
        ).scalar_one()
    assert killed == 1
    _wait(lambda: not cache.live, 5.0)
    assert _status(client.get(CARD, headers=headers)) == "conectado; fwd=miss"
    _wait(lambda: cache.live, 10.0)  # the listener reconnects by itself
    client.get(CARD, headers=headers)
    assert _status(client.get(CARD, headers=headers)) == "conectado; hit"


def test_cache_off_by_setting_builds_every_response(
    db_url: str, tmp_path: Path, seeded: Engine, role_keys: dict[Role, str]
) -> None:
    cfg = Settings(database_url=db_url, var_dir=tmp_path / "var", api_cache_seconds=0)
    app = create_app(cfg, engine=seeded)
    with TestClient(app) as client:
        statuses = {_status(client.get(CARD, headers=auth(role_keys[Role.VIEWER]))) for _ in "ab"}
    assert statuses == {"conectado; fwd=miss"}
    assert not app.state.read_cache.live


def test_entries_are_bounded_and_edits_refuse_responses_built_before_them() -> None:
    cache = ReadCache(ttl_seconds=60, probe_lag_seconds=5, max_bytes=4000)
    cache.live = True
    for i in range(10):
        cache.put(i, cache.stamp(), os.urandom(900), "application/json")
    assert 0 < len(cache) < 10  # least recently used dropped to stay within 4,000 bytes
    assert cache.get(9) is not None and cache.get(0) is None

    stamp = cache.stamp()
    cache.changed("sites")  # an edit lands while a response is being built
    cache.put("late", stamp, b"x", "application/json")
    assert cache.get("late") is None and len(cache) == 0

    cache.put("ok", cache.stamp(), b"x", "application/json")
    cache.changed("probe_results")  # probe data: kept for now (built < 5 s ago)
    assert cache.get("ok") is not None
    cache.live = False  # not listening: serve nothing
    assert cache.get("ok") is None


def test_a_write_empties_the_workers_cache_before_its_response_leaves(engine: Engine) -> None:
    # Without waiting for the database's notification, which may come after the client has
    # already asked again: the recorder empties the cache when the write's response starts.
    inner = FastAPI()
    seen: list[int] = []

    @inner.post("/write")
    def write(request: Request) -> dict[str, int]:
        return {"entries": len(request.app.state.read_cache)}

    cache = ReadCache(ttl_seconds=60, probe_lag_seconds=5, max_bytes=1 << 20)
    cache.live = True
    inner.state.read_cache = cache
    inner.state.engine = engine  # the recorder audits writes there
    inner.add_middleware(RequestRecorder)
    with TestClient(inner) as client:
        for method in ("get", "post"):
            cache.put("card", cache.stamp(), b"x", "application/json")
            response = client.request(method.upper(), "/write")
            seen.append(len(cache))
            if method == "post":
                assert response.json() == {"entries": 1}  # the route ran with it cached
    assert seen == [1, 0]  # a GET (405 here) keeps it, the POST empties it
