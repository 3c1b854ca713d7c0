"""Step Functions' documented limits and name rules in moto's Step Functions (each patch pinned by a contract test).

- StartExecution ``name``: 1-80 characters (the API model's ``Name`` shape); none of
  whitespace, ``< > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /``, control characters
  (U+0000-001F, U+007F-009F), U+FFFE-FFFF, surrogates or U+10FFFF (StartExecution's
  API reference). A bad character is ``InvalidName`` (``Invalid Name: '<name>'``); a
  length outside 1-80 is the model's ``ValidationException`` (``1 validation error
  detected: Value '<name>' at 'name' failed to satisfy constraint: Member must have
  length less than or equal to 80``), the error real AWS gives (reported verbatim by
  users; moto's own base backend answers the same). moto's executing backend checks
  neither.
- StartExecution ``input``: at most 262,144 bytes as UTF-8 (the quota page; the API model's
  ``SensitiveData`` max 262144). Over it: the model's ``ValidationException``, value
  omitted as AWS does for sensitive members (``1 validation error detected: Value at
  'input' failed to satisfy constraint: Member must have length less than or equal to
  262144``). The error code is the API model's (a length-constraint violation); the exact
  AWS text for this member is not recorded anywhere we found. moto accepts any size.
- ``States.DataLimitExceeded`` is "a terminal error that can't be caught by the
  States.ALL error type" (concepts-error-handling): a Retry or Catch on ``States.ALL``
  no longer matches it (one naming it still does). moto matches it. Note: one recorded
  AWS run (2024-03) shows ``States.ALL`` catching it; we follow the documentation.
"""

from __future__ import annotations

from typing import Any

_MARK = "_cosmicai_limits"
NAME_MAX = 80
INPUT_MAX_BYTES = 262_144
DATA_LIMIT = "States.DataLimitExceeded"
_FORBIDDEN = frozenset('<>{}[]?*"#%\\^|~`$&,;:/')


def _bad_character(char: str) -> bool:
    code = ord(char)
    return (char.isspace() or char in _FORBIDDEN or code <= 0x1F or 0x7F <= code <= 0x9F
            or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF, 0x10FFFF))


def check_start(name: str | None, execution_input: str | None) -> None:
    """Raise the error AWS gives for this StartExecution name and input, if any."""
    from moto.stepfunctions.exceptions import InvalidName, ValidationException

    if name is not None:
        if not 1 <= len(name) <= NAME_MAX:
            bound = "less than or equal to 80" if name else "greater than or equal to 1"
            raise ValidationException(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length {bound}")
        if any(_bad_character(char) for char in name):
            raise InvalidName(f"Invalid Name: '{name}'")
    if execution_input is not None and len(execution_input.encode("utf-8", "surrogatepass")) > INPUT_MAX_BYTES:
        raise ValidationException(
            f"1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to {INPUT_MAX_BYTES}")


def is_data_limit(error_name: Any) -> bool:
    return getattr(error_name, "error_name", None) == DATA_LIMIT


def install_sfn_limits() -> None:
    """Make ``States.ALL`` pass over ``States.DataLimitExceeded`` (idempotent). The StartExecution checks
    are called from ``emulator.sfn_patches``' StartExecution wrapper."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType

    original = ErrorEqualsDecl._eval_body
    if getattr(original, _MARK, False):
        return
    states_all = StatesErrorName(typ=StatesErrorNameType.StatesALL)

    def _eval_body(self: Any, env: Any) -> None:
        if env.stack and is_data_limit(env.stack[-1]) and states_all in self.error_names:
            env.stack.pop()
            env.stack.append(False)  # "can't be caught by the States.ALL error type"
            return
        original(self, env)

    setattr(_eval_body, _MARK, True)
    _eval_body._cosmicai_original = original  # type: ignore[attr-defined]
    ErrorEqualsDecl._eval_body = _eval_body
