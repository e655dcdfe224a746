"""The alert notifications' reads (core.alerts): the latest state of each condition on each
channel, and the latest notifications for the monitoring page; mixed into both stores."""

from __future__ import annotations

import pandas as pd

STATE_COLUMNS = ("condition_key, channel, kind, status, created_at, audit_seq, destination, "
                 "title, error")


class AlertReads:
    """What has been sent, has failed, or has cleared."""

    def alert_states(self) -> pd.DataFrame:
        """The latest notification of each (condition key, channel), a clear's channel being ''."""
        latest = self._dialect.latest_per("alert_notifications", "condition_key, channel")
        return self._frame(f"SELECT {STATE_COLUMNS} FROM ({latest}) s "
                           "ORDER BY condition_key, channel")

    def recent_alert_notifications(self, *, limit: int = 50) -> pd.DataFrame:
        """The latest `limit` notifications, newest first."""
        return self._frame(
            "SELECT created_at, condition_key, kind, channel, status, destination, title, error, "
            "user_name FROM alert_notifications ORDER BY audit_seq DESC LIMIT ?", [limit])
