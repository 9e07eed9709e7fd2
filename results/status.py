"""A site's state for one probe round, and uptime over a period.

Definitions (also in the README):

- Each probe of a round gets a **verdict**: ``good`` (it worked: SNMP answered with the WAN
  interface up, HTTP returned 2xx/3xx with the keyword if one is expected), ``impaired`` (the
  site answered but something is wrong: WAN ifOperStatus not up, HTTP status ≥ 400, broken
  TLS, keyword missing, malformed answer, SNMP auth error or unknown interface) or
  ``silent`` (nothing usable came back: timeout, refused or reset, unreachable). A probe that
  could not be made (``config``/``internal`` errors: our side) gives no verdict.
- The site's **state** for the round: ``up`` when every verdict is good; ``down`` when every
  verdict is silent; ``degraded`` otherwise (something answered, but not everything is
  right). A site with no verdict keeps its previous state (``unknown`` if never probed).
- A **failure** is a round whose state is not ``up``: ``consecutive_failures`` counts them,
  ``last_failure_at`` is the last; ``last_ok_at`` is the last round that was ``up``.
- **Uptime %** over a period = rounds in state ``up`` / rounds with a state, per site (rounds
  in which the site was not probed do not count either way).
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text

from probes.model import ErrorClass, HttpOutcome, SnmpOutcome

IF_OPER_UP: Final = 1


class SiteState(StrEnum):
    """A site's state (``site_status.state``)."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class Verdict(IntEnum):
    """What one probe says about the site (codes are stored in arrays)."""

    NONE = 0  # not probed, or could not be (our configuration)
    GOOD = 1
    IMPAIRED = 2
    SILENT = 3


SILENT_ERRORS: Final = frozenset({ErrorClass.TIMEOUT, ErrorClass.REFUSED, ErrorClass.UNREACHABLE})
OUR_ERRORS: Final = frozenset({ErrorClass.CONFIG, ErrorClass.INTERNAL})


def snmp_verdict(outcome: SnmpOutcome | None) -> Verdict:
    """The verdict of one SNMP probe."""
    if outcome is None:
        return Verdict.NONE
    if outcome.ok:
        oper = outcome.oper_status
        return Verdict.GOOD if oper is None or oper == IF_OPER_UP else Verdict.IMPAIRED
    return _error_verdict(outcome.error)


def http_verdict(outcome: HttpOutcome | None) -> Verdict:
    """The verdict of one HTTP probe."""
    if outcome is None:
        return Verdict.NONE
    if outcome.ok:
        return Verdict.GOOD
    return _error_verdict(outcome.error)


def _error_verdict(error: ErrorClass | None) -> Verdict:
    if error in OUR_ERRORS:
        return Verdict.NONE
    if error in SILENT_ERRORS:
        return Verdict.SILENT
    return Verdict.IMPAIRED


def site_state(*verdicts: Verdict) -> SiteState | None:
    """Combine a site's verdicts for one round (None: nothing to say, keep the old state)."""
    given = [v for v in verdicts if v != Verdict.NONE]
    if not given:
        return None
    if all(v == Verdict.GOOD for v in given):
        return SiteState.UP
    if all(v == Verdict.SILENT for v in given):
        return SiteState.DOWN
    return SiteState.DEGRADED


STATE_CODES: Final = ("", SiteState.UP.value, SiteState.DEGRADED.value, SiteState.DOWN.value)


def site_states(snmp: npt.NDArray[np.int8], http: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """``site_state`` over arrays of verdict codes; codes index ``STATE_CODES`` (0 = none)."""
    given_snmp = snmp != Verdict.NONE
    given_http = http != Verdict.NONE
    any_given = given_snmp | given_http
    all_good = (~given_snmp | (snmp == Verdict.GOOD)) & (~given_http | (http == Verdict.GOOD))
    all_silent = (~given_snmp | (snmp == Verdict.SILENT)) & (~given_http | (http == Verdict.SILENT))
    out = np.full(snmp.shape, 2, dtype=np.int8)  # degraded
    out[all_silent] = 3
    out[all_good] = 1
    out[~any_given] = 0
    return out


def uptime_by_site(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    site_ids: list[int] | None = None,
) -> dict[int, tuple[int, int, float | None]]:
    """Per site: (rounds up, rounds with a state, uptime %) from raw results in [since, until)."""
    rows = conn.execute(
        text(
            """
            SELECT site_id,
                   count(DISTINCT round_id) FILTER (WHERE state = 'up') AS up_rounds,
                   count(DISTINCT round_id) AS rounds
            FROM probe_results
            WHERE ts >= :since AND ts < :until
              AND (CAST(:ids AS bigint[]) IS NULL OR site_id = ANY(CAST(:ids AS bigint[])))
            GROUP BY site_id
            """
        ),
        {"since": since, "until": until, "ids": site_ids},
    )
    return {
        int(r.site_id): (
            int(r.up_rounds),
            int(r.rounds),
            100.0 * r.up_rounds / r.rounds if r.rounds else None,
        )
        for r in rows
    }
