"""``archon-db audit prune --older-than 90d``: delete audit-log entries past their retention.

Exit codes: 0 success (the number deleted is printed); 2 an error (a duration that cannot be
read, an unreachable database, a database not migrated to head).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.session import Url, fail, out, require_schema, with_layer

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

app = typer.Typer(help="The audit log (ENABLE_AUDIT_LOG): retention.", no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` as a timedelta; ValueError saying the form."""
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise ValueError(
            f"--older-than {text!r} is not a duration: give a positive whole number and a unit "
            "s, m, h, d or w, e.g. 90d"
        )
    try:
        age = timedelta(**{_UNITS[found.group(2).lower()]: int(found.group(1))})
        datetime.now(UTC) - age  # noqa: B018 - a cutoff before year 1 is refused here
        return age
    except OverflowError:
        raise ValueError(f"--older-than {text!r} is longer than any date can go back") from None


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Delete entries older than this: 90d, 12h, 30m, 2w."),
    ],
    url: Url = None,
) -> None:
    """Delete the audit-log entries written longer ago than --older-than; print how many."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        fail(str(exc))

    async def work(layer: DataLayer) -> int:
        await require_schema(layer)
        async with layer.uow() as uow:
            deleted = await uow.audit.prune(older_than=age)
            await uow.commit()
        return deleted

    deleted = with_layer(url, work, must_exist=True)
    out.print(f"deleted {deleted} audit entries older than {older_than.strip()}", highlight=False)
