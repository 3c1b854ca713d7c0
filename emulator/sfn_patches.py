"""moto's Step Functions, made to do what AWS does where moto 5.2.5 does not (each patch pinned by a contract test).

- An execution started without a name gets a UUID, as on AWS (moto gives Name null and
  an ARN ending ``:None``, so two unnamed executions collide).
- StartExecution on a state machine *version* ARN runs that version's definition, as on
  AWS (moto answers 500: its version objects lack what an execution needs). Each run
  starts on the version its deploy published, so another run's deploy cannot change it.

- ListStateMachineVersions answers, newest first, as on AWS (moto has no handler for it:
  "not implemented", and a traceback in the server's log).
- StartExecution's name and input are checked first, as AWS does (``emulator.sfn_limits``:
  names of 1-80 allowed characters, input up to 262,144 bytes).

The first two and the last wrap ``StepFunctionsParserBackend.start_execution``; the third adds
``StepFunctionResponse.list_state_machine_versions``. Installing twice is a no-op.
"""

from __future__ import annotations

import types
import uuid
from typing import Any

from emulator.sfn_limits import check_start

_MARK = "_cosmicai_patched"


def _as_runnable_version(backend: Any, arn: str) -> None:
    """Give a version object what the parser's start_execution uses: its source's execution list, backend and idempotency."""
    from moto.stepfunctions.models import StateMachine

    machine = backend.describe_state_machine(arn)
    source_arn = getattr(machine, "source_arn", None)
    if source_arn is None or hasattr(machine, "_handle_name_input_idempotency"):
        return
    source = backend.describe_state_machine(source_arn)
    machine.executions = source.executions  # shared: DescribeExecution and ListExecutions find them under the state machine
    machine.backend = source.backend
    machine._handle_name_input_idempotency = types.MethodType(StateMachine._handle_name_input_idempotency, machine)


def _list_state_machine_versions(self: Any) -> Any:
    """ListStateMachineVersions: the versions of one state machine, newest first."""
    from moto.core.responses import ActionResult

    machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
    versions = sorted(getattr(machine, "versions", {}).values(), key=lambda v: v.version, reverse=True)
    return ActionResult({"stateMachineVersions": [{"stateMachineVersionArn": v.arn, "creationDate": v.creation_date} for v in versions]})


def patch_step_functions() -> None:
    """Install the patches (idempotent)."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    if not hasattr(StepFunctionResponse, "list_state_machine_versions"):
        StepFunctionResponse.list_state_machine_versions = _list_state_machine_versions

    original = StepFunctionsParserBackend.start_execution
    if getattr(original, _MARK, False):
        return

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        check_start(name, kwargs.get("execution_input", args[0] if args else None))
        _as_runnable_version(self, state_machine_arn)
        return original(self, state_machine_arn, str(uuid.uuid4()) if name is None else name, *args, **kwargs)

    setattr(start_execution, _MARK, True)
    start_execution._cosmicai_original = original  # type: ignore[attr-defined]
    StepFunctionsParserBackend.start_execution = start_execution
