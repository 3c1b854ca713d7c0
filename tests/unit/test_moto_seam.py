"""Contract: the moto seam our Lambda runner replaces. A moto upgrade that moves it fails here."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import moto
import pytest
from moto.awslambda.models import LambdaFunction

from emulator import motoseam as runner

ROOT = Path(__file__).resolve().parents[2]


def _in_a_fresh_interpreter(script: str) -> None:
    """Run ``script`` (which prints ``ok`` at its end) where no moto module is imported yet."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_moto_is_the_pinned_minor_version():
    assert moto.__version__.startswith("5.2."), f"moto {moto.__version__}: the runner's seam was checked on 5.2.x"


def test_the_seam_has_the_signature_the_runner_expects():
    seam = getattr(LambdaFunction, runner.SEAM)
    params = list(inspect.signature(seam).parameters)
    assert params == ["self", "event"]


def test_invoke_goes_through_the_seam_and_unpacks_three_values():
    source = inspect.getsource(LambdaFunction.invoke)
    assert "res, errored, logs = self._invoke_lambda(event=body)" in source


def test_install_and_uninstall_swap_the_seam():
    original = getattr(LambdaFunction, runner.SEAM)

    def fake_invoke(fn, event):
        return ("{}", False, "")

    previous = runner.install(fake_invoke)
    try:
        assert previous is original
        assert getattr(LambdaFunction, runner.SEAM) is not original
        assert getattr(LambdaFunction, runner.SEAM)(object(), {"a": 1}) == ("{}", False, "")
    finally:
        runner.uninstall(previous)
    assert getattr(LambdaFunction, runner.SEAM) is original


def test_the_step_functions_patches_sit_where_moto_needs_them():
    """Contract: moto 5.2.x names no unnamed execution, cannot start a version, has no ListStateMachineVersions handler."""
    from moto.stepfunctions.models import StateMachine, StateMachineVersion
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    from emulator.sfn_patches import patch_step_functions

    patch_step_functions()
    patched = StepFunctionsParserBackend.start_execution
    assert getattr(patched, "_cosmicai_patched", False)
    params = list(inspect.signature(patched._cosmicai_original).parameters)
    assert params[:3] == ["self", "state_machine_arn", "name"]
    source = inspect.getsource(patched._cosmicai_original)
    assert "state_machine._handle_name_input_idempotency(" in source and "state_machine.executions.append(execution)" in source
    assert hasattr(StateMachine, "_handle_name_input_idempotency") and not hasattr(StateMachineVersion, "_handle_name_input_idempotency")
    assert "source_arn" in inspect.getsource(StateMachineVersion.__init__)
    assert callable(StepFunctionResponse.list_state_machine_versions)
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    assert getattr(ExecutionWorker.stop, "_cosmicai_patched", False)  # stop waits for the program, answers its date
    logic = inspect.getsource(ExecutionWorker._execution_logic)
    assert logic.index("self.env = ") < logic.index("program.eval(self.env)")  # the window the patch waits out
    assert "self.execution.stop_date = " in inspect.getsource(BaseExecutionWorkerCommunication._reflect_execution_status)
    assert "self._execution_communication = exec_comm" in inspect.getsource(ExecutionWorker.__init__)


def test_moto_batch_is_deferred_and_still_whole_when_asked_for():
    """Contract for ``moto_speed.defer_batch_import``: Step Functions' parser imports without moto.batch's package
    (and EC2's models); moto's backend registry, ``import moto.batch`` and ``from moto.batch import ...`` still get it
    whole. In a fresh interpreter: this one has imported moto's modules already."""
    script = (
        "import sys\n"
        "from emulator.moto_speed import defer_batch_import\n"
        "defer_batch_import(); defer_batch_import()\n"
        "import moto.stepfunctions.parser.models\n"
        "from moto.batch.utils import JobStatus\n"
        "assert 'moto.ec2' not in sys.modules and 'moto.batch.models' not in sys.modules, 'batch loaded at the parser import'\n"
        "from moto.backends import get_backend\n"
        "backends = get_backend('batch')\n"
        "import moto.batch\n"
        "from moto.batch import batch_backends\n"
        "assert moto.batch.batch_backends is backends is batch_backends and 'moto.ec2' in sys.modules\n"
        "assert backends['123456789012']['us-east-1'].describe_compute_environments([]) == []\n"
        "try:\n"
        "    moto.batch.no_such_name\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_name' in str(exc)\n"
        "print('ok')\n"
    )
    _in_a_fresh_interpreter(script)


def test_concurrent_first_requests_build_one_router():
    """Contract for ``moto_speed.lock_routers``, in a fresh interpreter: four threads asking for Lambda's router at
    once get one object, built once, through the names moto's request dispatch calls."""
    script = (
        "import threading\n"
        "from moto.core import responses, routing\n"
        "from emulator.moto_speed import lock_routers\n"
        "lock_routers(); lock_routers()\n"
        "assert responses.get_service_router is routing.get_service_router\n"
        "builds = []\n"
        "build = routing.RestRouter.__init__\n"
        "routing.RestRouter.__init__ = lambda self, *a: (builds.append(1), build(self, *a))[1]\n"
        "got = []\n"
        "ask = lambda: got.append(responses.get_service_router('lambda')._get_router('rest-json'))\n"
        "threads = [threading.Thread(target=ask) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len(got) == 4 and len({id(r) for r in got}) == 1 and len(builds) == 1, (len(got), len(builds))\n"
        "print('ok')\n"
    )
    _in_a_fresh_interpreter(script)


def test_moto_speed_ups_keep_what_moto_returns():
    """Contract for ``emulator.moto_speed``: the module listing, the JSONPath parses and the
    Step Functions clients are cached where moto calls them, and answer what moto's own would."""
    import moto.backends as backends
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client, json_path

    from emulator.moto_speed import speed_up_moto

    listed_before = sorted(backends.list_of_moto_modules())
    speed_up_moto()
    speed_up_moto()  # idempotent
    assert sorted(backends.list_of_moto_modules()) == listed_before and "s3" in listed_before
    assert backends.list_of_moto_modules() is backends.list_of_moto_modules()

    data = {"a": {"b": [1, 2, 3]}}
    assert json_path.extract_json("$.a.b[1]", data) == 2
    assert json_path.parse("$.a.b") is json_path.parse("$.a.b")
    assert result_path.parse("$.x") is result_path.parse("$.x")
    assert result_path.parse("$.x").update_or_create({}, 5) == {"x": 5}

    client = boto_client.boto_client_for("us-east-1", "lambda")
    assert boto_client.boto_client_for("us-east-1", "lambda") is client
    assert lambda_eval_utils.boto_client_for is boto_client.boto_client_for  # the module that imported it by name
    original = boto_client._cosmicai_original("us-east-1", "lambda")
    assert client.meta.endpoint_url == "https://lambda.us-east-1.amazonaws.com"  # never reached: answered in-process
    assert "Functions" in client.list_functions()  # no server listens in this test: moto's dispatcher answered
    assert client.meta.config.retries == original.meta.config.retries
    assert client.meta.config.read_timeout == original.meta.config.read_timeout
    assert client.meta.config.max_pool_connections >= 64
    assert boto_client.boto_client_for("eu-west-1", "lambda").meta.region_name == "eu-west-1"


def test_the_map_run_patches_sit_where_moto_needs_them():
    """Contract for ``emulator.sfn_map_runs``: moto 5.2.x rejects an integer ToleratedFailurePercentage, applies no
    tolerance, records no child executions, answers ListExecutions only by state machine; each patch sits on the
    method that does it, and moto's own code still does what the patch relies on."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (
        DistributedItemProcessorWorker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.map_run_record import MapRunRecord
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator_worker import (
        DistributedIteratorWorker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException
    from moto.stepfunctions.responses import StepFunctionResponse

    from emulator.sfn_map_runs import floats_for_percentages, install_map_runs, threshold_exceeded

    install_map_runs()
    install_map_runs()  # idempotent
    definition = ('{"StartAt": "M", "States": {"M": {"Type": "Map", "ToleratedFailurePercentage": 0, "ItemProcessor": {"ProcessorConfig": '
                  '{"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}}')
    with pytest.raises(ASLParserException):
        AmazonStateLanguageParser.parse._cosmicai_original(definition)  # why the patch exists
    program, _ = AmazonStateLanguageParser.parse(definition)
    assert program is not None
    assert '"ToleratedFailurePercentage": 0.0' in floats_for_percentages(definition)
    assert floats_for_percentages('{"Type": "Pass", "ToleratedFailurePercentage": 0}') == '{"Type": "Pass", "ToleratedFailurePercentage": 0}'

    props = inspect.getsource(StateMap.from_state_props._cosmicai_original)
    assert "self.iteration_component = " in props and "ToleratedFailureCountDecl" in props and "ToleratedFailurePercentageDecl" in props
    run = inspect.getsource(DistributedIterationComponent._map_run._cosmicai_original)
    assert "job_pool.await_jobs()" in run and run.rstrip().endswith("env.stack.append(outputs)")
    body = inspect.getsource(DistributedIterationComponent._eval_body)
    assert "self._map_run(env=env, eval_input=eval_input)" in body and "except FailureEventException" in body and "MapRunStatus.FAILED" in body
    for worker in (DistributedItemProcessorWorker, DistributedIteratorWorker):
        job = inspect.getsource(worker._eval_job._cosmicai_original)
        assert job.count("execution_counter.running.offset(-1)") == 1  # only a succeeded child is settled by moto
        assert "isinstance(end_program_state, ProgramError)" in job and "item_counter.failed.count()" in job
        assert list(inspect.signature(worker._eval_job).parameters) == ["self", "env", "job"]
    record = inspect.getsource(MapRunRecord.__init__)
    assert all(name in record for name in ("self.map_run_arn", "self.map_state_machine_arn", "self.item_counter", "self.tolerated_failure_count"))
    listing = inspect.getsource(StepFunctionResponse.list_executions._cosmicai_original)
    assert 'self._get_param("stateMachineArn")' in listing and "mapRunArn" not in listing
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    assert "self.env = None" in inspect.getsource(ExecutionWorker.__init__)  # until its thread starts: why lookups are guarded
    assert "execution.exec_worker.env.map_run_record_pool_manager.get_all()" in inspect.getsource(StepFunctionsParserBackend.list_map_runs._cosmicai_original)
    described = inspect.getsource(StepFunctionsParserBackend.describe_map_run._cosmicai_original)
    assert "execution.exec_worker.env.map_run_record_pool_manager.get(map_run_arn)" in described and "map_run_record.describe()" in described

    assert threshold_exceeded(1, 3, None, None) and not threshold_exceeded(0, 3, None, None)
    assert not threshold_exceeded(1, 3, 1, None) and threshold_exceeded(2, 3, 1, None)
    assert not threshold_exceeded(1, 3, None, 50.0) and threshold_exceeded(1, 3, None, 30.0)
    assert threshold_exceeded(1, 3, 0, 50.0) and not threshold_exceeded(3, 3, None, 100.0)


def test_the_step_functions_limits_sit_where_moto_needs_them():
    """Contract for ``emulator.sfn_limits``: moto 5.2.x lets States.ALL match States.DataLimitExceeded and checks
    no execution name or input size when it executes state machines."""
    from types import SimpleNamespace

    from moto.stepfunctions.exceptions import InvalidName, ValidationException
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    from emulator.sfn_limits import check_start, install_sfn_limits
    from emulator.sfn_patches import patch_step_functions

    install_sfn_limits()
    install_sfn_limits()  # idempotent
    assert "_STATE_ALL_ERROR in self.error_names" in inspect.getsource(ErrorEqualsDecl._eval_body._cosmicai_original)
    data_limit = StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)

    def matches(declared, error):
        env = SimpleNamespace(stack=[error])
        ErrorEqualsDecl(declared)._eval_body(env)
        return env.stack == [True]

    everything = [StatesErrorName(typ=StatesErrorNameType.StatesALL)]
    assert not matches(everything, data_limit)
    assert matches([StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)], data_limit)
    assert matches(everything, CustomErrorName("ValueError"))

    patch_step_functions()
    started = inspect.getsource(StepFunctionsParserBackend.start_execution._cosmicai_original)
    assert "_validate_name" not in started and "262144" not in started
    assert "start_execution(\n            arn, name, execution_input\n        )" in inspect.getsource(StepFunctionResponse.start_execution)
    check_start("ok-name_1.2", "{}")
    check_start(None, None)
    for bad in ("a b", "a/b", "a\u0085b", "a\ufffeb"):
        with pytest.raises(InvalidName):
            check_start(bad, "{}")
    with pytest.raises(ValidationException):
        check_start("n" * 81, "{}")
    with pytest.raises(ValidationException):
        check_start("n", "x" * 262_145)
    check_start("n" * 80, "x" * 262_144)


def test_the_lambda_rules_wrap_what_moto_calls():
    """Contract for ``emulator.lambda_rules``: the four LambdaBackend methods it wraps keep their signatures, moto still
    says ``Handled``, judges the response by ``sys.getsizeof``, stores reservations on the function, and turns an
    HTTPException raised in a backend method into the response."""
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse
    from moto.core.responses import BaseResponse

    from emulator import lambda_rules

    lambda_rules.install()
    lambda_rules.install()  # idempotent: wrapped once
    expected = {
        "invoke": ["self", "function_name", "qualifier", "body", "headers", "response_headers"],
        "create_function": ["self", "spec"],
        "update_function_configuration": ["self", "function_name", "qualifier", "body"],
        "put_function_concurrency": ["self", "function_name", "reserved_concurrency"],
    }
    for name, params in expected.items():
        wrapped = getattr(LambdaBackend, name)
        assert getattr(wrapped, "_cosmicai_rules", False), name
        original = wrapped._cosmicai_original
        assert not getattr(original, "_cosmicai_rules", False), f"{name} wrapped twice"
        assert list(inspect.signature(original).parameters) == params, name
    assert 'response_headers["x-amz-function-error"] = "Handled"' in inspect.getsource(LambdaFunction.invoke)
    response_source = inspect.getsource(LambdaResponse.invoke)
    assert "sys.getsizeof(payload) > 6000000" in response_source and "self.body" in response_source
    assert "fn.reserved_concurrency = reserved_concurrency" in inspect.getsource(LambdaBackend.put_function_concurrency._cosmicai_original)
    assert "except HTTPException as http_error" in inspect.getsource(BaseResponse.call_action)
    assert lambda_rules._Payload(b"x" * 7_000_000).__sizeof__() == 0


@pytest.mark.parametrize("kind", ["zip", "zip with moto's defaults", "image"])
def test_a_planned_spec_is_the_spec_moto_gives_the_functions_first_version(kind):
    """Contract for ``motoseam.planned_spec`` (the environments a deploy starts before its functions exist): the
    FunctionSpec predicted from CreateFunction's parameters is the one moto's published version 1 has."""
    import io
    import zipfile

    import boto3
    from moto import mock_aws
    from moto.awslambda.models import lambda_backends

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return 1\n")
    request: dict = {"FunctionName": f"planned-{kind.split()[0]}", "Tags": {"cosmicai:stack": "t"}}
    if kind == "image":
        request.update(PackageType="Image", Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/cosmicai:abc"},
                       ImageConfig={"Command": ["inference.infer.handler"]}, MemorySize=2048, Timeout=120,
                       Environment={"Variables": {"B": "2", "A": "1"}})
    else:
        request.update(PackageType="Zip", Code={"ZipFile": buffer.getvalue()}, Handler="app.handler", Runtime="python3.11")
        if "defaults" not in kind:
            request.update(MemorySize=512, Timeout=30, EphemeralStorage={"Size": 1024}, Environment={"Variables": {"COSMICAI_STACK": "t"}})
    with mock_aws():
        role = boto3.client("iam", region_name="eu-west-1").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="eu-west-1")
        lam.create_function(Role=role, **request)
        arn = lam.publish_version(FunctionName=request["FunctionName"])["FunctionArn"]
        published = runner.function_spec(lambda_backends["123456789012"]["eu-west-1"].get_function(arn))
    assert published.version == "1"
    assert runner.planned_spec({**request, "Role": ""}, "eu-west-1") == published
