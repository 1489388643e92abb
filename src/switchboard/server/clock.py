"""Wall-clock timestamps as the API shows them: ISO 8601, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return format_iso(datetime.now(UTC))


def format_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; one without a zone is taken as UTC.

    Raises:
        ValueError: the text is not an ISO 8601 timestamp.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 at +03:00 is before year 1 in UTC
        raise ValueError(f"{text!r} is out of the calendar's range in UTC") from None


def format_ms(epoch_ms: int) -> str:
    """Milliseconds since the Unix epoch, as :func:`format_iso` shows them."""
    return format_iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))
