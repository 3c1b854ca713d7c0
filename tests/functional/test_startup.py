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


_BEFORE_THE_START = r'''
import json, logging, os, sys
from dataclasses import replace
from cosmicai import deploy as deploy_mod
from cosmicai.runs import open_target
from cosmicai.targets import resolve
from cosmicai.warmup import prestarter, prewarmer
from emulator.embedded import EmbeddedEmulator

stack = deploy_mod.Stack(name="cosmicai-early", bucket="cosmicai-early", infer_memory_mb=2048, max_concurrency=2)
seen = {}
start = EmbeddedEmulator.start

def counting_start(self, wait=True):
    seen.setdefault("moto_imported_before_start", "moto.awslambda.models" in sys.modules)
    seen.setdefault("before_start", sorted([spec.name, len(pool.all)] for spec, pool in self.pool.pools.items()))
    return start(self, wait)

EmbeddedEmulator.start = counting_start
warnings = []
logging.getLogger("emulator.embedded").addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: warnings.append(r.getMessage())})())
with open_target(resolve("embedded"), capacity=2, wait=False, stack=stack) as (live, engine):
    kept = {spec.name: list(pool.all) for spec, pool in engine.pool.pools.items()}
    engine.ready()
    deployment = deploy_mod.deploy(live, stack, on_function=prewarmer(engine), on_planned=prestarter(engine))
    after = {spec.name: list(pool.all) for spec, pool in engine.pool.pools.items() if spec.version != "$LATEST"}
    seen["kept"] = all(after.get(name) == environments for name, environments in kept.items())
    seen["versions"] = sorted({e.spec.version for found in after.values() for e in found})
    seen["warnings"] = warnings
    port = os.environ["MOTO_PORT"]
    other = EmbeddedEmulator(capacity=1)  # a second emulator in this process: refused, and its failed start undoes nothing of the first's
    other.prestart("", "us-east-1", deploy_mod.planned_requests(live, replace(stack, name="cosmicai-other"))["summarize"], 1)
    try:
        other.start()
    except RuntimeError as exc:
        seen["refused"] = str(exc)
    finally:
        other.stop()
    seen["port_kept"] = os.environ.get("MOTO_PORT") == port
    seen["other_workers"] = other.pool is None
print(json.dumps(seen))
'''


def test_a_run_starts_its_workers_before_the_emulator_starts_and_its_deploy_keeps_them(tmp_path):
    """``open_target(stack=...)`` (``cosmicai run`` on the embedded target) starts the stack's workers before moto
    is imported; the deploy's published versions take them over, none added, none said to differ. A second emulator
    in the same process is refused, and stopping it leaves the running one's port alone."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "COSMICAI_HOME": str(tmp_path / "home")}
    env.pop("COSMICAI_ENDPOINT", None)
    done = subprocess.run([sys.executable, "-c", _BEFORE_THE_START], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before_start"] == [["cosmicai-early-infer", 2], ["cosmicai-early-initialize", 1], ["cosmicai-early-summarize", 1]]
    assert not seen["moto_imported_before_start"]
    assert seen["kept"] and seen["versions"] == ["1"]
    assert not [line for line in seen["warnings"] if "do not match" in line], seen["warnings"]
    assert "already running" in seen["refused"] and seen["port_kept"] and seen["other_workers"]
