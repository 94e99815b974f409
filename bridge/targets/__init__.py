"""Remote calendars (cibles) the bridge syncs Gestan's appointments with."""
