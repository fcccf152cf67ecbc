"""Where the cutoff sits in time."""

from __future__ import annotations

import datetime as dt


def cutoff_instant(cutoff: dt.date) -> dt.datetime:
    """End of the cutoff day: features see transactions strictly before it."""
    return dt.datetime.combine(cutoff + dt.timedelta(days=1), dt.time())
