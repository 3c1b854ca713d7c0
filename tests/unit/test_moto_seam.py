"""Contract: the moto seam our Lambda runner replaces. A moto upgrade that moves it fails here."""

from __future__ import annotations

import inspect

import moto
from moto.awslambda.models import LambdaFunction

from emulator import motoseam as runner


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
    assert client.meta.endpoint_url == original.meta.endpoint_url
    assert client.meta.config.retries == original.meta.config.retries
    assert client.meta.config.read_timeout == original.meta.config.read_timeout
    assert client.meta.config.max_pool_connections >= 64
    assert boto_client.boto_client_for("eu-west-1", "lambda").meta.region_name == "eu-west-1"
