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
- StopExecution right after StartExecution stops the execution, as on AWS. moto's worker
  thread parses the definition, then builds the execution's environment, then marks the
  program running; a stop before that answered 500 (``'NoneType' object has no attribute
  'set_stop'``) or was ignored, and the execution ran on. The stop now waits for the program
  to be running (milliseconds; at most ``STOP_WAIT_S``), and answers the stop date (moto's
  answer had none: its thread records it only once the program has ended).

The first two and the fourth wrap ``StepFunctionsParserBackend.start_execution``; the third adds
``StepFunctionResponse.list_state_machine_versions``; the last wraps ``ExecutionWorker.stop``.
Installing twice is a no-op.
"""

from __future__ import annotations

import time
import types
import uuid
from typing import Any

from emulator.sfn_limits import check_start

_MARK = "_cosmicai_patched"
STOP_WAIT_S = 10.0  # how long a stop waits for a just-started execution's program to run


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


def _stop_once_running(original: Any) -> Any:
    """``ExecutionWorker.stop`` that first waits for the worker's program to be running (see the module)."""

    def stop(self: Any, stop_date: Any, error: Any, cause: Any) -> None:
        deadline = time.monotonic() + STOP_WAIT_S
        while (self.env is None or self.env.program_state() is None) and time.monotonic() < deadline:
            time.sleep(0.002)
        if self.env is not None:  # else its thread never got as far as an environment: nothing runs to stop
            original(self, stop_date=stop_date, error=error, cause=cause)
        execution = getattr(self._execution_communication, "execution", None)
        if execution is not None and execution.stop_date is None:  # StopExecution answers its stop date at once, as AWS's
            execution.stop_date = stop_date  # (moto's thread sets it as the program ends, after the answer)

    setattr(stop, _MARK, True)
    return stop


def patch_step_functions() -> None:
    """Install the patches (idempotent)."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    if not hasattr(StepFunctionResponse, "list_state_machine_versions"):
        StepFunctionResponse.list_state_machine_versions = _list_state_machine_versions
    if not getattr(ExecutionWorker.stop, _MARK, False):
        ExecutionWorker.stop = _stop_once_running(ExecutionWorker.stop)

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
