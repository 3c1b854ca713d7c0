"""A run's start on the embedded target: its workers start while it deploys (they import their handlers, Infer's
torch, before the execution needs them), and a failed start of them is said, never swallowed.

Embedded only: these look inside the in-process pool.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from cosmicai import deploy as deploy_mod
from cosmicai.runs import _prewarmer

pytestmark = pytest.mark.embedded_only("looks inside the embedded engine's worker pool")


def _environments(emulator, stack):
    """{function key: [environments]} of the stack's functions in the pool."""
    found: dict[str, list] = {}
    for spec, pool in emulator.pool.pools.items():
        for key in deploy_mod.HANDLERS:
            if spec.name == stack.function_name(key):
                found.setdefault(key, []).extend(pool.all)
    return found


def test_a_deploy_starts_each_functions_workers_as_it_is_published(target, emulator, tiny_stack):
    stack = replace(tiny_stack, name="cosmicai-prewarm")
    deploy_mod.deploy(target, stack, on_function=_prewarmer(emulator))
    environments = _environments(emulator, stack)
    capacity = emulator.pool.capacity
    assert {key: len(found) for key, found in environments.items()} == {"initialize": 1, "infer": capacity, "summarize": 1}
    for found in environments.values():  # started, not just listed: each imports its handler (Infer: torch) and is ready
        for environment in found:
            environment.wait_ready()
            assert environment.healthy() and environment.invocations == 0
    infer = environments["infer"][0]
    assert "Init Duration" not in infer.init_logs and infer.init_s is not None and infer.init_s > 0


def test_a_prewarm_that_fails_is_said_and_the_deploy_goes_on(target, tiny_stack, caplog):
    class Broken:
        def prewarm(self, arn, count=None):
            raise RuntimeError("no such method in this moto")

    stack = replace(tiny_stack, name="cosmicai-prewarm-broken")
    with caplog.at_level(logging.WARNING, logger="cosmicai.runs"):
        deployment = deploy_mod.deploy(target, stack, on_function=_prewarmer(Broken()))
    assert set(deployment.function_arns) == set(deploy_mod.HANDLERS)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 3 and all("no such method in this moto" in line and "start cold" in line for line in said)
