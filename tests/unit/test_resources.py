"""Unit tests of cosmicai.resources: how a deploy waits on the target (no timing: the waits are recorded)."""

from __future__ import annotations

from cosmicai import resources


def test_deploy_waits_for_a_function_with_short_polls_then_longer(monkeypatch):
    """A Pending function is polled after 20 ms (an emulator is ready at once), the wait doubling to 2 s at most."""
    states = iter(["Pending"] * 9 + ["Active"])
    naps: list[float] = []

    class Lambda:
        def get_function_configuration(self, FunctionName):
            return {"State": next(states)}

    monkeypatch.setattr(resources.time, "sleep", naps.append)
    resources._wait_function_ready(Lambda(), "f")
    assert naps == [0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.0, 2.0]
