"""The ``DASHBOARD`` section of the command file: where the page is served, how often it is fed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from deepleaps.control.server import is_loopback
from deepleaps.lang.diagnostics import Diagnostic, ProgramError


@attrs.frozen
class DashboardSettings:
    #: The address to bind; one that is not loopback only with ``allow_remote``.
    host: str = "127.0.0.1"
    #: The port; 0 picks a free one (the printed URL names it).
    port: int = 0
    allow_remote: bool = False
    #: Seconds between two updates of the page: counters, journal rows and metric points
    #: are gathered into one event per interval, whatever the step rate.
    interval: float = 1.0
    #: The most points of a curve the page is sent; older points are left out.
    max_points: int = 20000

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, **overrides: Any) -> DashboardSettings:
        """The settings, checked.

        Raises:
            ProgramError: an unknown setting, a value out of range, or an address
                that is not loopback without ``allow_remote``.
        """
        values = dict(section or {})
        known = {field.name for field in attrs.fields(cls)}
        unknown = set(values) - known
        if unknown:
            message = f"unknown DASHBOARD setting {', '.join(sorted(unknown))}; settings are {', '.join(sorted(known))}"
            raise ProgramError([Diagnostic(message)])
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        if not settings.allow_remote and not is_loopback(settings.host):
            message = f"the dashboard serves loopback addresses only, not '{settings.host}'; set DASHBOARD.allow_remote"
            raise ProgramError([Diagnostic(message)])
        if settings.interval <= 0 or settings.max_points < 1:
            raise ProgramError([Diagnostic("DASHBOARD.interval must be above 0 and DASHBOARD.max_points at least 1")])
        return settings
