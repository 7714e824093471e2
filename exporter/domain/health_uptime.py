"""The uptime ratio of a probed service: the share of successful probes over a window."""

from __future__ import annotations

from collections import deque


class UptimeWindow:
    """Probe outcomes of the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._up = 0

    def add(self, at: float, up: bool) -> float:
        """Record an outcome at monotonic time ``at``; the ratio over the window (0-1)."""
        self._outcomes.append((at, up))
        self._up += up
        while self._outcomes and self._outcomes[0][0] <= at - self.window:
            _, was_up = self._outcomes.popleft()
            self._up -= was_up
        return self._up / len(self._outcomes)
