"""The one rule that tells a timestamp's unit: seconds or milliseconds since the epoch."""

__all__ = ["MILLISECONDS_THRESHOLD"]

#: A timestamp at or above this is in milliseconds, below it in seconds. 1e11 seconds is the
#: year 5138 and 1e11 milliseconds is March 1973, so no real date is read in the wrong unit.
#: Used wherever a wire ``ts``/``created_at``/``expires_at`` or a ``since``/``until`` is read.
MILLISECONDS_THRESHOLD = 1e11
