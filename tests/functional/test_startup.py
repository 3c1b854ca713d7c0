"""A run's start on the embedded target: its workers start while it deploys, from the moment its functions are
packaged (they import their handlers, Infer's torch, before the execution needs them), and a failed start of them
is said, never swallowed.

Embedded only: these look inside the in-process pool.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from cosmicai import deploy as deploy_mod
from cosmicai.warmup import prestarter, prewarmer

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
    deploy_mod.deploy(target, stack, on_function=prewarmer(emulator))
    environments = _environments(emulator, stack)
    capacity = emulator.pool.capacity
    assert {key: len(found) for key, found in environments.items()} == {"initialize": 1, "infer": capacity, "summarize": 1}
    for found in environments.values():  # started, not just listed: each imports its handler (Infer: torch) and is ready
        for environment in found:
            environment.wait_ready()
            assert environment.healthy() and environment.invocations == 0
    infer = environments["infer"][0]
    assert "Init Duration" not in infer.init_logs and infer.init_s is not None and infer.init_s > 0


def test_a_deploy_starts_the_workers_before_it_creates_the_functions_and_the_published_versions_keep_them(target, emulator, tiny_stack, caplog):
    stack = replace(tiny_stack, name="cosmicai-prestart")
    lam = target.client("lambda")
    prestart = prestarter(emulator)
    before: dict[str, list] = {}

    def planned(key, account, region, request):
        prestart(key, account, region, request)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):  # started before the function exists
            lam.get_function(FunctionName=request["FunctionName"])
        before[key] = list(_environments(emulator, stack).get(key, []))

    with caplog.at_level(logging.WARNING):
        deployment = deploy_mod.deploy(target, stack, on_function=prewarmer(emulator), on_planned=planned)
    capacity = emulator.pool.capacity
    assert {key: len(found) for key, found in before.items() if found} == {"initialize": 1, "infer": capacity, "summarize": 1}
    after = _environments(emulator, stack)
    assert {key: after[key] for key in before if before[key]} == {key: found for key, found in before.items() if found}  # kept, none added
    for key, found in after.items():  # each serves the version the state machine invokes
        assert {environment.spec.version for environment in found} == {deployment.function_arns[key].rsplit(":", 1)[1]}
    assert not [r for r in caplog.records if "do not match" in r.getMessage()]


def test_workers_started_for_a_function_that_then_differs_are_said_and_replaced(target, emulator, tiny_stack, caplog):
    """A prediction that turns out wrong (a bug) is said; the published version gets its own workers."""
    stack = replace(tiny_stack, name="cosmicai-prestart-wrong")
    prestart = prestarter(emulator)

    def planned(key, account, region, request):
        wrong = {**request, "Environment": {"Variables": {**request["Environment"]["Variables"], "PREDICTED": "wrongly"}}}
        prestart(key, account, region, wrong)

    with caplog.at_level(logging.WARNING, logger="emulator.embedded"):
        deploy_mod.deploy(target, stack, on_function=prewarmer(emulator), on_planned=planned)
    said = [r.getMessage() for r in caplog.records if "do not match" in r.getMessage()]
    assert len(said) == 3 and all("environment" in line for line in said), said
    for found in _environments(emulator, stack).values():
        serving = [e for e in found if e.alive() and "PREDICTED" not in dict(e.spec.environment)]
        assert serving, "the published version has no workers of its own"


def test_a_prewarm_that_fails_is_said_and_the_deploy_goes_on(target, tiny_stack, caplog):
    class Broken:
        def prewarm(self, arn, count=None):
            raise RuntimeError("no such method in this moto")

    stack = replace(tiny_stack, name="cosmicai-prewarm-broken")
    with caplog.at_level(logging.WARNING, logger="cosmicai.warmup"):
        deployment = deploy_mod.deploy(target, stack, on_function=prewarmer(Broken()))
    assert set(deployment.function_arns) == set(deploy_mod.HANDLERS)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 3 and all("no such method in this moto" in line and "start cold" in line for line in said)


def test_a_prewarmed_environment_idle_past_the_init_limit_serves_its_first_invoke_as_it_is(target, emulator, tiny_stack):
    """An environment that was ready in time and then waited (a prewarm) is not an init past the limit: no
    INIT_REPORT timeout, no second init, and its Init Duration is the init's, not the wait's."""
    import base64
    import io
    import time
    import uuid
    import zipfile

    lam = target.client("lambda")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return 'served'\n")
    role = target.client("iam").create_role(RoleName=f"prewarm-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    name = f"prewarm-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": buffer.getvalue()},
                        Environment={"Variables": {"COSMICAI_LAMBDA_INIT_TIMEOUT_S": "1"}})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    arn = lam.publish_version(FunctionName=name)["FunctionArn"]
    emulator.prewarm(arn, 1)
    idle_s = 2.0
    time.sleep(idle_s)  # ready long before, then idle past its 1 s init limit
    response = lam.invoke(FunctionName=arn, LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert not response.get("FunctionError") and response["Payload"].read() == b'"served"'
    assert "INIT_REPORT" not in tail
    init_ms = float(tail.split("Init Duration: ")[1].split(" ms")[0])
    assert 0 < init_ms < idle_s * 1000
