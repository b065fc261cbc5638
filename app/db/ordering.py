"""SQL for Qdrant's `order_by` scroll: points ordered by a payload value.

Every distinct value at the key forms its own entry (a point whose array holds 3 numbers is
listed up to 3 times), as in Qdrant and qdrant-client local mode. Numbers order numerically
(integer and float indexes); datetime indexes order RFC 3339 strings by instant (no zone
means UTC) and report microseconds since the epoch as the order value. Ties go to Qdrant's
id order, so pages are deterministic.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import offload
from app.db.repository import PointRecord
from app.db.tables import points
from app.models import wire_point_id

_NAIVE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
_ZONED = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)$"
_TEXT = "(e #>> '{}')"
_MICROSECONDS = sa.literal_column(
    f"""(extract(epoch FROM CASE WHEN {_TEXT} ~ '{_ZONED}' THEN {_TEXT}::timestamptz
        ELSE {_TEXT}::timestamp AT TIME ZONE 'UTC' END) * 1000000)::bigint""",
    sa.BigInteger,
)
_IS_DATETIME = sa.literal_column(
    f"(jsonb_typeof(e) = 'string' AND ({_TEXT} ~ '{_NAIVE}' OR {_TEXT} ~ '{_ZONED}'))",
    sa.Boolean,
)


async def ordered_points(
    conn: AsyncConnection,
    namespace_id: int,
    *,
    path: list[str],
    descending: bool,
    start_from: Any,
    datetimes: bool,
    limit: int,
    where: sa.ColumnElement[bool] | None,
) -> list[tuple[PointRecord, Any]]:
    """Up to `limit` (point, order value) entries, best first, from `start_from` on.

    `start_from` is a number, or microseconds since the epoch for datetimes.
    """
    found = points.c.payload.op("#>")(sa.literal(path, sa.ARRAY(sa.Text)))
    values = sa.case(
        (sa.func.jsonb_typeof(found) == "array", found), else_=sa.func.jsonb_build_array(found)
    )
    element = sa.func.jsonb_array_elements(values).column_valued("e")
    if datetimes:
        value, shown, test = _MICROSECONDS, _MICROSECONDS, _IS_DATETIME
    else:
        value = sa.cast(element, sa.Numeric)
        shown = sa.type_coerce(element, JSONB)
        test = sa.func.jsonb_typeof(element) == "number"
    order = (points.c.id_kind, points.c.id_number, points.c.point_id)
    stmt = (
        sa.select(points.c.point_id, points.c.id_kind, points.c.seq, points.c.payload, shown)
        .where(points.c.namespace_id == namespace_id, element.is_not(None), test)
        .distinct(value, *order)
        .order_by(value.desc() if descending else value.asc(), *order)
        .limit(limit)
    )
    if where is not None:
        stmt = stmt.where(where)
    if start_from is not None:
        stmt = stmt.where(value <= start_from if descending else value >= start_from)
    rows = (await offload.execute(conn, stmt)).all()
    return [
        (PointRecord(wire_point_id(r.point_id, r.id_kind), r.seq, r.payload, None, {}), r[4])
        for r in rows
    ]
