"""Server-rendered pages: login, the operators' dashboard, a site's page, the coverage page.

Pages use a session cookie set by the login form (the key is typed once; the browser keeps
only a random session token, HttpOnly and SameSite=Strict, that ends at logout, after
``api_session_hours`` or when the key is revoked). The pages' JavaScript calls the same JSON
API with that cookie and the X-Requested-With header.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import Permission, Principal, authenticate_token, create_session, end_session
from api.charts import format_bps, series_svg
from api.deps import SESSION_COOKIE, Conn, SettingsDep, optional_caller
from api.display import (
    format_duration,
    format_when,
    incident_cause,
    oper_status,
    probe_result,
    tls_expiry,
)
from api.queries.card import Period, site_card_json
from api.queries.status import SummaryDimension, state_counts, status_summary
from geo.coverage_queries import latest_run, municipality_coverage, national_coverage
from results.current import PROBES_LATE_INTERVALS, probe_freshness, probes_behind
from results.incidents import count_open_incidents, list_incidents

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
TEMPLATES.env.filters["bps"] = format_bps
TEMPLATES.env.filters["when"] = format_when
TEMPLATES.env.filters["cause"] = incident_cause
TEMPLATES.env.filters["duration"] = format_duration
TEMPLATES.env.filters["oper_status"] = oper_status
TEMPLATES.env.filters["tls_expiry"] = tls_expiry
TEMPLATES.env.globals["probe_result"] = probe_result

router = APIRouter(include_in_schema=False)

MaybeCaller = Annotated[Principal | None, Depends(optional_caller)]


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _page(
    request: Request, name: str, caller: Principal | None, status: int = 200, **context: Any
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "caller": caller,
            "can_coverage": caller is not None and caller.can(Permission.COVERAGE),
            **context,
        },
        status_code=status,
    )


def _forbidden(request: Request, caller: Principal, what: str, roles: str) -> HTMLResponse:
    return _page(
        request,
        "error.html",
        caller,
        status=403,
        title="Not allowed",
        detail=f"Your key '{caller.name}' ({caller.role.value}) cannot see {what}; "
        f"it needs one of: {roles}.",
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, cfg: SettingsDep, next: Annotated[str | None, Query()] = None
) -> HTMLResponse:
    """The login form."""
    return _page(request, "login.html", None, next=_safe_next(next), hours=cfg.api_session_hours)


@router.post("/login", response_model=None)
def login(
    request: Request,
    conn: Conn,
    cfg: SettingsDep,
    key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the key, open a session and go to ``next``."""
    principal = authenticate_token(conn, key)
    if principal is None:
        return _page(
            request,
            "login.html",
            None,
            status=401,
            error="That key is not valid (unknown, revoked or expired).",
            next=_safe_next(next),
            hours=cfg.api_session_hours,
        )
    token = create_session(
        conn, key_id=principal.key_id, lifetime=timedelta(hours=cfg.api_session_hours)
    )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(cfg.api_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=cfg.api_cookie_secure,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, conn: Conn) -> RedirectResponse:
    """End the session and go back to the login form."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        end_session(conn, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse, response_model=None)
def dashboard(request: Request, conn: Conn, caller: MaybeCaller, cfg: SettingsDep) -> Response:
    """The operators' dashboard: counts by state, how current the probes are, open incidents,
    the health map."""
    if caller is None:
        return _to_login(request)
    counts = state_counts(conn)
    incidents = list_incidents(conn, status="open", limit=50)
    open_sites, open_municipal = count_open_incidents(conn)
    fresh = probe_freshness(conn)
    late_after = timedelta(seconds=PROBES_LATE_INTERVALS * cfg.probe_interval)
    behind = probes_behind(fresh, cfg.probe_interval)
    return _page(
        request,
        "dashboard.html",
        caller,
        counts=counts,
        states=list(counts),
        total=sum(counts.values()),
        incidents=incidents,
        open_incidents=open_sites + open_municipal,
        open_municipal=open_municipal,
        by_state=status_summary(conn, SummaryDimension.STATE),
        fresh=fresh,
        behind=behind,
        late_after=late_after,
        can_ack=caller.can(Permission.ACKNOWLEDGE),
    )


@router.get("/sites/{site_key}", response_class=HTMLResponse, response_model=None)
def site_page(
    request: Request,
    conn: Conn,
    caller: MaybeCaller,
    site_key: Annotated[str, PathParam(max_length=100)],
    period: Period = Period.H24,
) -> Response:
    """A technician's page of one site: card, site map, probe now."""
    if caller is None:
        return _to_login(request)
    body = site_card_json(conn, site_key, period=period)
    if body is None:
        return _page(
            request,
            "error.html",
            caller,
            status=404,
            title="No such site",
            detail=f"No site has the key {site_key!r}.",
        )
    card = json.loads(body)
    return _page(
        request,
        "site.html",
        caller,
        card=card,
        chart=series_svg(card["series"]["points"]),
        can_probe=caller.can(Permission.PROBE),
    )


@router.get("/coverage", response_class=HTMLResponse, response_model=None)
def coverage_page(request: Request, conn: Conn, caller: MaybeCaller) -> Response:
    """The planners' page: national summary, uncovered municipalities, coverage map."""
    if caller is None:
        return _to_login(request)
    if not caller.can(Permission.COVERAGE):
        return _forbidden(request, caller, "coverage", "planner, operator, admin")
    run = latest_run(conn)
    context: dict[str, Any] = {"run": run}
    if run is not None:
        context["national"] = national_coverage(conn, run.id)
        context["uncovered"] = municipality_coverage(
            conn, run.id, uncovered_only=True, order="priority", limit=50
        )
    return _page(request, "coverage.html", caller, **context)
