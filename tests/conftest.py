"""Hypothesis profiles, chosen by the environment variable ``HYPOTHESIS_PROFILE``: ``default``
(quick, for local runs) or ``ci`` (at least 500 examples of every property; what CI runs).

The tests set no example counts of their own, so the profile governs them all."""

from __future__ import annotations

import os

from hypothesis import settings

# No deadline: how long an example takes on a shared machine is not a property of the code
# (speed is measured by bench/, side by side).
settings.register_profile("default", settings.get_profile("default"), max_examples=50, deadline=None)
# print_blob: a failure in CI's log comes with the @reproduce_failure line that replays it.
settings.register_profile("ci", settings.get_profile("default"), max_examples=500, print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
