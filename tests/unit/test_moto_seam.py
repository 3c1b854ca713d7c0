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


def test_unnamed_executions_get_a_name_as_on_aws():
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    from emulator.embedded import name_unnamed_executions

    name_unnamed_executions()
    patched = StepFunctionsParserBackend.start_execution
    assert getattr(patched, "_cosmicai_names", False)
    params = list(inspect.signature(patched._cosmicai_original).parameters)
    assert params[:3] == ["self", "state_machine_arn", "name"]
