"""Distributed Map failure semantics in moto's Step Functions, as AWS documents them (each patch pinned by a contract test).

moto 5.2.5 parses ``ToleratedFailurePercentage``/``ToleratedFailureCount`` but never applies
them ("currently have no effect"): a failed child execution leaves ``null`` in the Map's
output and the execution SUCCEEDS. AWS (maprun-fail-threshold.html) fails the Map Run,
and the Map state, with ``States.ExceedToleratedFailureThreshold`` once the failed or
timed-out items exceed the threshold; with neither field set the threshold is zero (any
failed item fails it); with both set, exceeding either fails it.

- Tolerance: applied when the Map Run's children are done (AWS "may continue to run child
  workflows ... after the tolerated failure threshold is exceeded"), from the Map Run's
  current values (so UpdateMapRun counts); the Map's Retry/Catch see the error as usual.
- Integer percentages (``0``, ``100``): AWS accepts them; moto's grammar takes only a
  decimal there, so the parser is given the same definition with the value as a float
  (what DescribeStateMachine returns is the definition as written).
- Child executions: each item of a Map Run is recorded as a child execution (name, ARN
  ``...:execution:<machine>/<map run label>:<name>``, status, start and stop dates);
  ``ListExecutions(mapRunArn=...)`` lists them (moto answers 500: it requires a
  ``stateMachineArn``). moto leaves a failed child counted as running in the Map Run's
  ``executionCounts``: settled here.
- ListMapRuns / DescribeMapRun while any execution is starting: moto reads the execution's
  environment before its worker thread has made one (``None``) and answers 500; here an
  execution that has not started yet has no Map Run, and the others are still found.
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from typing import Any

_MARK = "_cosmicai_map_runs"
EXCEEDED = "States.ExceedToleratedFailureThreshold"
EXCEEDED_CAUSE = "The specified tolerated failure threshold was exceeded"
_LOCK = threading.Lock()


def install_map_runs() -> None:
    """Install every patch above (idempotent)."""
    _accept_integer_percentages()
    _enforce_tolerance()
    _record_child_executions()
    _list_map_run_executions()
    _guard_map_run_lookups()


def _patched(owner: Any, name: str, make: Any) -> None:
    """Replace ``owner.name`` with ``make(original)`` once; the original stays reachable for contract tests."""
    original = owner.__dict__[name]
    if getattr(original, _MARK, False) or getattr(getattr(original, "__func__", None), _MARK, False):
        return
    target = original.__func__ if isinstance(original, staticmethod) else original
    replacement = make(target)
    setattr(replacement, _MARK, True)
    replacement._cosmicai_original = target  # type: ignore[attr-defined]
    setattr(owner, name, staticmethod(replacement) if isinstance(original, staticmethod) else replacement)


# -- integer percentages ------------------------------------------------------------------------

def floats_for_percentages(definition: str) -> str:
    """The definition with each Map's integer ``ToleratedFailurePercentage`` written as a float (else unchanged)."""
    try:
        document = json.loads(definition)
    except (TypeError, ValueError):
        return definition
    return json.dumps(document) if _floatify(document) else definition


def _floatify(node: Any) -> bool:
    changed = False
    if isinstance(node, dict):
        value = node.get("ToleratedFailurePercentage")
        if node.get("Type") == "Map" and isinstance(value, int) and not isinstance(value, bool):
            node["ToleratedFailurePercentage"] = float(value)
            changed = True
        for child in node.values():
            changed = _floatify(child) or changed
    elif isinstance(node, list):
        for child in node:
            changed = _floatify(child) or changed
    return changed


def _accept_integer_percentages() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    def make(original: Any) -> Any:
        def parse(definition: str) -> Any:
            return original(floats_for_percentages(definition))
        return parse

    _patched(AmazonStateLanguageParser, "parse", make)


# -- tolerance ----------------------------------------------------------------------------------

def threshold_exceeded(failed: int, total: int, count: int | None, percentage: float | None) -> bool:
    """AWS's rule: neither field set -> any failure; else exceeding either set value (percent of all items)."""
    if count is None and percentage is None:
        return failed > 0
    if count is not None and failed > count:
        return True
    return percentage is not None and total > 0 and failed * 100.0 / total > percentage


def _enforce_tolerance() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.tolerated_failure import (
        ToleratedFailureCountDecl,
        ToleratedFailurePercentageDecl,
    )

    def make_props(original: Any) -> Any:
        def from_state_props(self: Any, state_props: Any) -> None:
            original(self, state_props)
            declared = (state_props.get(ToleratedFailureCountDecl) is not None, state_props.get(ToleratedFailurePercentageDecl) is not None)
            self.iteration_component._cosmicai_tolerance_declared = declared
        return from_state_props

    def make_run(original: Any) -> Any:
        def _map_run(self: Any, env: Any, eval_input: Any) -> None:
            original(self, env, eval_input)
            record = eval_input.map_run_record
            count_set, percentage_set = getattr(self, "_cosmicai_tolerance_declared", (False, False))
            items = record.item_counter
            failed = items.failed.get() + items.timed_out.get()
            count = record.tolerated_failure_count if count_set else None
            percentage = record.tolerated_failure_percentage if percentage_set else None
            if threshold_exceeded(failed, items.total.get(), count, percentage):
                env.stack.pop()  # the outputs moto pushed: the Map fails instead
                raise _exceeded(env)
        return _map_run

    _patched(StateMap, "from_state_props", make_props)
    _patched(DistributedIterationComponent, "_map_run", make_run)


def _exceeded(env: Any) -> Exception:
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
    details = EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(error=EXCEEDED, cause=EXCEEDED_CAUSE))
    return FailureEventException(FailureEvent(env=env, error_name=name, event_type=HistoryEventType.MapRunFailed, event_details=details))


# -- child executions ---------------------------------------------------------------------------

def children_of(record: Any) -> list[dict[str, Any]]:
    """The child executions recorded on a Map Run record (a list shared with the workers)."""
    with _LOCK:
        if not hasattr(record, "_cosmicai_children"):
            record._cosmicai_children = []
        return record._cosmicai_children


def _child_status(env: Any) -> tuple[str, bool]:
    """(status, whether moto counted it in executionCounts) of a finished child program."""
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded, ProgramError, ProgramStopped, ProgramTimedOut

    state = env.program_state()
    if isinstance(state, ProgramEnded):
        return "SUCCEEDED", True
    if isinstance(state, ProgramTimedOut):
        return "TIMED_OUT", True  # moto counts it as succeeded
    if isinstance(state, ProgramStopped):
        return "ABORTED", True
    return "FAILED", isinstance(state, ProgramError)


def _record_child_executions() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (
        DistributedItemProcessorWorker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator_worker import (
        DistributedIteratorWorker,
    )

    def make(original: Any) -> Any:
        def _eval_job(self: Any, env: Any, job: Any) -> None:
            record = self._map_run_record
            name = str(uuid.uuid4())
            machine = record.map_state_machine_arn
            child = {"name": name, "executionArn": f"{machine.replace(':stateMachine:', ':execution:', 1)}:{name}",
                     "stateMachineArn": machine, "mapRunArn": record.map_run_arn, "status": "RUNNING",
                     "startDate": datetime.datetime.now(tz=datetime.timezone.utc), "itemCount": 1}
            children_of(record).append(child)
            try:
                original(self, env, job)
            finally:
                status, counted = _child_status(env)
                if status != "SUCCEEDED":
                    record.execution_counter.running.offset(-1)  # moto settles only a succeeded child
                if not counted:
                    record.execution_counter.failed.count()
                child.update(status=status, stopDate=datetime.datetime.now(tz=datetime.timezone.utc))
        return _eval_job

    _patched(DistributedItemProcessorWorker, "_eval_job", make)
    _patched(DistributedIteratorWorker, "_eval_job", make)


def find_map_run(backend: Any, map_run_arn: str) -> Any:
    """The Map Run record with this ARN, from any execution of the backend (moto's ResourceNotFound if none)."""
    from moto.stepfunctions.exceptions import ResourceNotFound

    for machine in list(backend.state_machines):
        for execution in list(machine.executions):
            worker_env = getattr(getattr(execution, "exec_worker", None), "env", None)
            record = worker_env.map_run_record_pool_manager.get(map_run_arn) if worker_env is not None else None
            if record is not None:
                return record
    raise ResourceNotFound(map_run_arn)


def _list_map_run_executions() -> None:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.exceptions import ValidationException
    from moto.stepfunctions.responses import StepFunctionResponse

    def make(original: Any) -> Any:
        def list_executions(self: Any) -> Any:
            map_run_arn = self._get_param("mapRunArn")
            if not map_run_arn:
                return original(self)
            if self._get_param("stateMachineArn"):
                raise ValidationException("Specify either a mapRunArn or a stateMachineArn, not both")
            children = sorted(children_of(find_map_run(self.stepfunction_backend, map_run_arn)), key=lambda c: c["startDate"], reverse=True)
            wanted = self._get_param("statusFilter")
            listed = [dict(c) for c in children if not wanted or c["status"] == wanted]
            start = int(self._get_param("nextToken") or 0)
            size = self._get_int_param("maxResults") or 100
            page = listed[start:start + size]
            response: dict[str, Any] = {"executions": page}
            if start + size < len(listed):
                response["nextToken"] = str(start + size)
            return ActionResult(response)
        return list_executions

    _patched(StepFunctionResponse, "list_executions", make)


def _guard_map_run_lookups() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def make_list(original: Any) -> Any:
        def list_map_runs(self: Any, execution_arn: str) -> Any:
            execution = self.describe_execution(execution_arn=execution_arn)
            if getattr(getattr(execution, "exec_worker", None), "env", None) is None:
                return {"mapRuns": []}  # not started yet: no Map Run
            return original(self, execution_arn)
        return list_map_runs

    def make_describe(original: Any) -> Any:
        def describe_map_run(self: Any, map_run_arn: str) -> Any:
            return find_map_run(self, map_run_arn).describe()
        return describe_map_run

    _patched(StepFunctionsParserBackend, "list_map_runs", make_list)
    _patched(StepFunctionsParserBackend, "describe_map_run", make_describe)
