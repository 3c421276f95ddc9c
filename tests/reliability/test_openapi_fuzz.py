"""Bad input, generated: schemathesis drives every operation of the app's OpenAPI document
in-process (ASGI, the app's real lifespan: PostgreSQL, Redis, Kafka of the shared stack, in
a database, topic prefix and Redis prefix of its own) with an admin token and the shared
Traccar key. Checks: no 5xx, and responses match their declared schemas.

The schema says a cursor is a string and a time or date is a string, so schemathesis alone
draws random text, which every route refuses early: it never found the 500s an attacker did
(issue 19, finding 8) with well-formed base64 of the wrong JSON, integers past a column's
range, and real dates at the ends of the calendar with offsets. ``hostile_query`` adds those
to every operation that takes ``cursor``, ``from``, ``to`` or ``date`` (and to ``date`` /
``date-time`` strings in bodies); ``test_the_strategies_reach_what_the_attacker_sent``
checks that they can produce each value class the attacker used.

Not fuzzed here, and why:
- ``/api/admin/dead-letters*`` read Kafka with a fresh consumer per request (seconds each);
  tests/integration covers them;
- the socket.io live feed is not an OpenAPI operation (tests/integration/test_live.py);
- the OsmAnd and Traccar parsers are fuzzed directly with hypothesis in
  tests/unit/test_osmand_fuzz.py (much faster than through HTTP).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning, NoSuchExample
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance

from infrastructure.settings import Settings
from tests.conftest import RUN_ID, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EXAMPLES_PER_OPERATION = 12
# ... and for an operation that takes a cursor or a time (the hostile strategies below)
EXAMPLES_WITH_CURSOR_OR_TIME = 50
EXCLUDED_PATHS = r"^/api/admin/dead-letters"
TIME_PARAMS = frozenset({"from", "to", "date"})
# Offsets that push a time at either end of the calendar past it once converted to UTC.
OFFSETS = ["", "Z", "+00:00", "+14:00", "-14:00", "+05:30", "-12:00"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


EDGE_DAYS = [date.min, date.min + timedelta(days=1), date.max - timedelta(days=1), date.max]
# The sort-key values a cursor carries (a time or date, an id) and the wrong kinds and ranges
# of them that answered 500: a number where a uuid is the key, a float or an object where an
# integer is, integers past int4 and bigint, a date where a time is, times at the calendar's
# ends with an offset that pushes them past it.
CURSOR_VALUES: list[Any] = [
    123,
    1.5,
    {"a": 1},
    [1],
    None,
    True,
    2**31,
    -(2**31) - 1,
    2**63,
    -(2**63) - 1,
    "2026-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "not-a-uuid",
    "a1b2c3d4-0001-4000-8000-000000000001",
]


def extreme_times() -> st.SearchStrategy[str]:
    """ISO times and dates in years 1..9999, mostly on the first or last two days (hours in,
    what the attacker used), with and without an offset."""
    near_edges = st.builds(
        lambda day, hour: datetime.combine(day, time(hour)),
        st.sampled_from(EDGE_DAYS),
        st.integers(0, 23),
    )
    moments = st.one_of(near_edges, near_edges, st.datetimes())  # naive
    with_offset = st.builds(lambda t, o: t.isoformat() + o, moments, st.sampled_from(OFFSETS))
    days = st.one_of(st.sampled_from(EDGE_DAYS), st.dates()).map(date.isoformat)
    return st.one_of(with_offset, with_offset, days)


def hostile_cursors() -> st.SearchStrategy[str]:
    """Well-formed base64 of JSON the route cannot use, most often a key of the usual arity
    (one or two values) made of ``CURSOR_VALUES``; else any JSON, or malformed base64/JSON."""
    one = st.sampled_from(CURSOR_VALUES)
    keyish = st.one_of(st.tuples(one), st.tuples(one), st.tuples(one, one)).map(list)
    value = st.one_of(
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        extreme_times(),
        st.uuids().map(str),
    )
    anything = st.one_of(st.lists(value, max_size=3), value)
    encoded = st.one_of(keyish, keyish, keyish, anything).map(
        lambda v: _b64(json.dumps(v).encode())
    )
    broken_json = st.binary(max_size=24).map(_b64)
    not_base64 = st.text(max_size=24)
    return st.one_of(encoded, encoded, encoded, encoded, broken_json, not_base64)


KEEP = object()  # leave the parameter as schemathesis drew it


def hostile_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Give the operation's ``cursor`` and time parameters hostile values, three times in
    four (else leave what schemathesis drew)."""
    declared = {parameter.name for parameter in context.operation.query}
    extra: dict[str, st.SearchStrategy[Any]] = {}
    if "cursor" in declared:
        extra["cursor"] = hostile_cursors()
    for name in TIME_PARAMS & declared:
        extra[name] = extreme_times()
    if not extra:
        return st.just(query)
    drawn = st.fixed_dictionaries(
        {
            name: st.one_of(st.just(KEEP), strategy, strategy, strategy)
            for name, strategy in extra.items()
        }
    )
    return drawn.map(
        lambda values: {
            **(query or {}),
            **{name: value for name, value in values.items() if value is not KEEP},
        }
    )


@pytest.fixture(scope="session")
async def fuzz_settings(stack_running: None) -> AsyncIterator[Settings]:
    """A database (migrated, seeded), topics and Redis prefix only the fuzzer writes to."""
    from infrastructure.kafka import delete_topics, ensure_topics
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect
    from infrastructure.redis import create_redis
    from infrastructure.seed import seed

    base = make_settings("-fuzz")
    fuzz = base.model_copy(
        update={"pg": base.pg.model_copy(update={"database": f"fp_test_{RUN_ID}_fuzz"})}
    )
    admin = await connect(fuzz.pg, database="postgres")
    await admin.execute(f'CREATE DATABASE "{fuzz.pg.database}"')
    conn = await connect(fuzz.pg)
    try:
        await migrate(conn)
        await seed(conn)
    finally:
        await conn.close()
    await ensure_topics(fuzz.kafka)
    yield fuzz
    await asyncio.to_thread(shutdown_lifespans)  # the app's lifespan runs in schemathesis' loop
    with contextlib.suppress(Exception):
        await delete_topics(fuzz.kafka, fuzz.kafka.topic_prefix)
    redis = create_redis(fuzz.redis)
    async for key in redis.scan_iter(match=f"{fuzz.redis.key_prefix}*", count=1000):
        await redis.delete(key)
    await redis.aclose()
    await admin.execute(f'DROP DATABASE IF EXISTS "{fuzz.pg.database}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def admin_headers(fuzz_settings: Settings) -> dict[str, str]:
    """tenant-1's seeded admin (a real user row) and the shared Traccar key."""
    from api.security import Principal, issue_access_token
    from infrastructure.postgres import connect

    conn = await connect(fuzz_settings.pg)
    try:
        user_id = await conn.fetchval(
            "SELECT id::text FROM users"
            " WHERE email = 'admin@tenant1.com' AND tenant_id = 'tenant-1'"
        )
    finally:
        await conn.close()
    principal = Principal(str(user_id), "tenant-1", "admin", "admin@tenant1.com")
    token = issue_access_token(principal, fuzz_settings.auth)
    return {"Authorization": f"Bearer {token}", "X-API-Key": "traccar-shared-key"}


@pytest.fixture(scope="session")
def api_schema(fuzz_settings: Settings) -> Iterator[Any]:
    from api.main import create_app

    app = create_app(fuzz_settings)
    with warnings.catch_warnings():
        # FastAPI warns that GET /api/osmand and /api/osmand/ share an operation id
        # (docs/security.md, findings); the schema is otherwise valid.
        warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
        app.openapi()
    schema: Any = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema = schema.exclude(path_regex=EXCLUDED_PATHS)
    schema.hook("flatmap_query")(hostile_query)
    # typed dates in bodies and queries (a route for 9999-12-31 answered 500 on its history)
    schemathesis.openapi.format("date", extreme_times().map(lambda v: v[:10]))
    schemathesis.openapi.format("date-time", extreme_times())
    if only := os.environ.get("FUZZ_ONLY"):  # e.g. FUZZ_ONLY=^/api/auth to reproduce one
        schema = schema.include(path_regex=only)
    yield schema


def test_no_server_error_and_responses_match_the_schema(
    api_schema: Any, admin_headers: dict[str, str]
) -> None:
    """Every operation, EXAMPLES_PER_OPERATION generated requests each, more for those that
    take a cursor or a time (schemathesis' pytest plugin does not load under pytest 9, so the
    operations are driven directly)."""
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        hostile = {p.name for p in operation.query} & (TIME_PARAMS | {"cursor"})

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_WITH_CURSOR_OR_TIME if hostile else EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same examples on every run: CI stays reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                headers=admin_headers, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            with warnings.catch_warnings():
                # schemathesis' own strategies draw from `random`; hypothesis warns about it
                warnings.simplefilter("ignore", HypothesisDeprecationWarning)
                run()
        except Exception as exc:  # collect every operation's failure, then report them all
            found = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
            failures += [f"{operation.label}: {e!r}"[:1500] for e in found]
    if not os.environ.get("FUZZ_ONLY"):
        assert operations > 50, operations  # the whole document was walked
    assert not failures, "\n\n".join(failures)


def _decoded(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        return None


SEARCH = settings(max_examples=5_000, derandomize=True, database=None)


def test_the_strategies_reach_what_the_attacker_sent() -> None:
    """Each class of input that answered 500 before (issue 19, finding 8) is among what the
    fuzzer draws: a search finds an example of each."""
    cursors = hostile_cursors()
    wanted = {
        "[123]: a number where a uuid is the key": lambda v: (
            isinstance(v, list) and len(v) == 1 and type(v[0]) is int
        ),
        "a float": lambda v: isinstance(v, list) and len(v) == 1 and isinstance(v[0], float),
        "an object": lambda v: isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict),
        "an integer >= 2^63": lambda v: (
            isinstance(v, list) and len(v) == 1 and type(v[0]) is int and v[0] >= 2**63
        ),
        "an integer past int4": lambda v: (
            isinstance(v, list) and len(v) == 1 and type(v[0]) is int and 2**31 <= v[0] < 2**63
        ),
        "a date and a number": lambda v: (
            isinstance(v, list)
            and len(v) == 2
            and isinstance(v[0], str)
            and v[0][:4].isdigit()
            and isinstance(v[1], int)
        ),
    }
    missing = []
    for label, predicate in wanted.items():
        try:
            find(cursors, lambda c, p=predicate: p(_decoded(c)), settings=SEARCH)  # type: ignore[misc]
        except NoSuchExample:
            missing.append(label)
    assert not missing, missing
    assert find(cursors, lambda c: _decoded(c) is None, settings=SEARCH)  # not base64/JSON
    times = extreme_times()
    for wanted_time in (
        lambda t: t.startswith("0001-01-01T") and t.endswith("+14:00"),
        lambda t: t.startswith("9999-12-3") and t.endswith("-14:00"),
        lambda t: t == "0001-01-01T00:00:00",
        lambda t: t == "9999-12-31",
    ):
        assert find(times, wanted_time, settings=SEARCH)
