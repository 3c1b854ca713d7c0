"""Lambda's runtimes, environment, logs, ephemeral storage and init phase, as a function and its caller see them (plain boto3).

The init-limit test shortens Lambda's 10 s init limit with the emulator's knob
``COSMICAI_LAMBDA_INIT_TIMEOUT_S`` (read from the function's variables too), so
it needs no 12 s import; on AWS the knob is an ordinary variable and the limit 10 s.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
import uuid
import zipfile

import pytest

STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")
LAMBDA_PATH_TAIL = ["/usr/local/bin", "/usr/bin/", "/bin", "/opt/bin"]
ENV_APP = """
import os
def handler(event, context):
    return {"env": dict(os.environ), "cwd": os.getcwd(), "files": sorted(os.listdir(".")), "stream": context.log_stream_name}
"""


def invoke(lam, name, event=None, **kwargs):
    """(response, decoded payload, LogResult text) of one synchronous invoke with the log tail."""
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail", **kwargs)
    return response, json.loads(response["Payload"].read()), base64.b64decode(response.get("LogResult", "")).decode()


def stream_events(logs, name, want, timeout_s=20.0):
    """{stream: [messages]} of /aws/lambda/<name> once ``want(streams)`` holds (log delivery may lag)."""
    deadline = time.time() + timeout_s
    while True:
        streams = {}
        try:
            for stream in logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]:
                events = logs.get_log_events(logGroupName=f"/aws/lambda/{name}", logStreamName=stream["logStreamName"], startFromHead=True)
                streams[stream["logStreamName"]] = [e["message"].rstrip("\n") for e in events["events"]]
        except logs.exceptions.ResourceNotFoundException:
            pass
        if want(streams) or time.time() > deadline:
            return streams
        time.sleep(0.5)


def _zip(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def report(log_tail):
    return next(line for line in log_tail.splitlines() if line.startswith("REPORT"))


@pytest.mark.fidelity("zip-runtime-imports")
def test_a_zip_function_has_its_zip_the_standard_library_and_the_sdk_only(aws, make_function):
    lam = aws("lambda")
    probe = make_function({
        "app.py": "import importlib.util\n"
                  "import boto3, botocore, s3transfer, jmespath, dateutil, urllib3, six, json, sqlite3\n"
                  "import vendored\n"
                  "def handler(event, context):\n"
                  "    return {m: importlib.util.find_spec(m) is not None for m in event['modules']}\n",
        "vendored/__init__.py": "",
    })
    _, found, _ = invoke(lam, probe, {"modules": ["torch", "numpy", "moto", "pydantic", "cosmicai", "emulator", "inference", "psutil"]})
    assert found == dict.fromkeys(found, False) and len(found) == 8

    missing = make_function({"app.py": "import pydantic\ndef handler(event, context):\n    return 1\n"})
    response, payload, _ = invoke(lam, missing)
    assert response.get("FunctionError")
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == "Unable to import module 'app': No module named 'pydantic'"


@pytest.mark.fidelity("image-function-cmd")
def test_an_image_function_runs_its_cmd_with_the_image_packages(aws, role_arn):
    from emulator.runtimes import save_local_image  # offline, this is `docker build` + `docker push`

    uri = f"localhost:5000/fidelity-image:{uuid.uuid4().hex[:12]}"
    save_local_image(uri, _zip({"app.py": "import pydantic\ndef main(event, context):\n    return {'pydantic': pydantic.VERSION}\n"}), ["app.main"])
    lam = aws("lambda")
    name = f"fidelity-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Role=role_arn, PackageType="Image", Code={"ImageUri": uri}, Timeout=30)
    try:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        response, payload, _ = invoke(lam, name)
        assert not response.get("FunctionError"), payload
        assert payload["pydantic"].startswith("2.")
    finally:
        lam.delete_function(FunctionName=name)


@pytest.mark.fidelity("reserved-environment")
def test_lambda_sets_its_reserved_variables_and_runs_in_the_task_root(aws, make_function):
    name = make_function({"app.py": ENV_APP}, MemorySize=256)
    _, seen, _ = invoke(aws("lambda"), name)
    env = seen["env"]
    assert env["LAMBDA_TASK_ROOT"] == seen["cwd"] and "app.py" in seen["files"]
    assert env["LAMBDA_RUNTIME_DIR"] and env["LAMBDA_RUNTIME_DIR"] != env["LAMBDA_TASK_ROOT"]
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], env["AWS_LAMBDA_FUNCTION_VERSION"]) == (name, "256", "$LATEST")
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert STREAM.match(env["AWS_LAMBDA_LOG_STREAM_NAME"]) and env["AWS_LAMBDA_LOG_STREAM_NAME"] == seen["stream"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert (env["TZ"], env["LANG"]) == (":UTC", "en_US.UTF-8")


LAMBDA_NAMES = {"PATH", "PYTHONPATH", "LANG", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "PWD", "SHLVL", "_HANDLER", "TMPDIR",
                "COSMICAI_TORCH_THREADS", "OMP_NUM_THREADS", "EDGE_PORT"}  # TMPDIR, threads: the emulator's; EDGE_PORT: LocalStack's
LAMBDA_PREFIXES = ("AWS_", "_AWS_", "LAMBDA_", "_X_AMZN_", "LOCALSTACK_")


@pytest.mark.fidelity("no-host-environment")
def test_no_host_variable_leaks_into_a_function(aws, make_function):
    name = make_function({"app.py": ENV_APP}, Environment={"Variables": {"MY_SETTING": "1"}})
    env = invoke(aws("lambda"), name)[1]["env"]
    assert env["PATH"].split(":")[1:] == LAMBDA_PATH_TAIL
    assert env["PYTHONPATH"] == env["LAMBDA_RUNTIME_DIR"]
    leaked = sorted(k for k in env if k not in LAMBDA_NAMES and not k.startswith(LAMBDA_PREFIXES) and k != "MY_SETTING")
    assert leaked == []


@pytest.mark.fidelity("log-stream-per-environment")
def test_one_log_stream_per_environment_named_as_lambda_names_it(aws, make_function):
    name = make_function({"app.py": "def handler(event, context):\n    return [context.log_stream_name, context.aws_request_id]\n"})
    lam = aws("lambda")
    ids, names = [], set()
    for _ in range(3):  # one after another: the same warm environment
        stream, request_id = invoke(lam, name)[1]
        ids.append(request_id)
        names.add(stream)
    streams = stream_events(aws("logs"), name, lambda s: sum(m.startswith("REPORT") for ms in s.values() for m in ms) >= 3)
    assert list(streams) == list(names) and STREAM.match(next(iter(names)))
    lines = next(iter(streams.values()))
    assert [m.split()[2] for m in lines if m.startswith("START")] == ids  # START RequestId: <id> ...


@pytest.mark.fidelity("init-output-logged")
def test_import_time_output_is_in_the_log_stream(aws, make_function):
    name = make_function({"app.py": "print('loading the model', flush=True)\ndef handler(event, context):\n    return 1\n"})
    invoke(aws("lambda"), name)
    streams = stream_events(aws("logs"), name, lambda s: any(m.startswith("REPORT") for ms in s.values() for m in ms))
    lines = next(iter(streams.values()))
    assert "loading the model" in lines
    assert lines.index("loading the model") < next(i for i, m in enumerate(lines) if m.startswith("START"))


@pytest.mark.fidelity("report-init-duration")
def test_init_duration_is_reported_on_a_cold_start_only(aws, make_function):
    name = make_function({"app.py": "def handler(event, context):\n    return 1\n"})
    lam = aws("lambda")
    cold, warm = report(invoke(lam, name)[2]), report(invoke(lam, name)[2])
    assert re.search(r"\tInit Duration: \d+\.\d\d ms", cold)
    assert "Init Duration" not in warm


@pytest.mark.fidelity("report-billed-duration")
def test_billed_duration_is_the_duration_rounded_up_to_a_millisecond(aws, make_function):
    name = make_function({"app.py": "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 1\n"})
    lam = aws("lambda")
    for seconds in (0, 0.0123, 0.0456):
        line = report(invoke(lam, name, {"s": seconds})[2])
        duration = float(re.search(r"\tDuration: ([\d.]+) ms", line).group(1))
        billed = int(re.search(r"\tBilled Duration: (\d+) ms", line).group(1))
        assert billed == math.ceil(duration)


TMP_APP = """
import os, tempfile
def handler(event, context):
    path = os.path.join(tempfile.gettempdir(), "data.bin")
    if event.get("read"):
        with open(path, "rb") as f:
            return f.read().decode()
    if event.get("mb"):
        try:
            with open(path, "wb") as f:
                for _ in range(event["mb"]):
                    f.write(b"x" * 2**20)
        finally:
            os.remove(path)
        return "written"
    with open(path, "wb") as f:
        f.write(event["text"].encode())
    return "kept"
"""


@pytest.mark.fidelity("ephemeral-storage-limit")
def test_writing_beyond_the_ephemeral_storage_fails_with_enospc(aws, make_function):
    name = make_function({"app.py": TMP_APP}, Timeout=60)  # EphemeralStorage: the default 512 MB
    lam = aws("lambda")
    assert invoke(lam, name, {"mb": 100})[1] == "written"
    response, payload, _ = invoke(lam, name, {"mb": 600})
    assert response.get("FunctionError")
    assert (payload["errorType"], payload["errorMessage"]) == ("OSError", "[Errno 28] No space left on device")


@pytest.mark.fidelity("ephemeral-storage-warm")
def test_tmp_is_kept_across_warm_invocations(aws, make_function):
    name = make_function({"app.py": TMP_APP})
    lam = aws("lambda")
    text = uuid.uuid4().hex
    assert invoke(lam, name, {"text": text})[1] == "kept"
    assert invoke(lam, name, {"read": True})[1] == text


@pytest.mark.fidelity("init-phase-limit")
def test_an_init_past_the_limit_is_retried_within_the_timeout(aws, make_function):
    slow = "import time\ntime.sleep(2.5)\ndef handler(event, context):\n    return 'ready'\n"
    knob = {"Variables": {"COSMICAI_LAMBDA_INIT_TIMEOUT_S": "1"}}  # the init limit, shortened from Lambda's 10 s
    lam = aws("lambda")
    fits = make_function({"app.py": slow}, Timeout=20, Environment=knob)
    response, payload, _ = invoke(lam, fits)
    assert not response.get("FunctionError") and payload == "ready"
    too_long = make_function({"app.py": slow}, Timeout=1, Environment=knob)
    response, payload, _ = invoke(lam, too_long)
    assert response.get("FunctionError")
    assert payload["errorType"] == "Sandbox.Timedout" and payload["errorMessage"].endswith("Task timed out after 1.00 seconds")
