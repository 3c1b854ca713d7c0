"""Typed models for the pipeline's events, validated at the edge.

``Payload`` is the execution input. Canonical keys, with the reference
project's keys accepted as aliases so its payloads run unchanged:

=============================  ===============================  =========================================
key                            alias (reference)                meaning
=============================  ===============================  =========================================
bucket                         S3_BUCKET                        bucket holding scripts/ and results/
data_bucket                    data_bucket                      bucket of the partitions (default: bucket;
                                                                alone, it is also the bucket)
data_prefix                    DATA_PREFIX                      prefix of the partition files
world_size                     file_limit                       number of ranks (default: one per partition)
batch_size                                                      inference batch size (default 512)
result_prefix                  result_path                      where the run's results go (default results/<run_id>)
model_key                      S3_object_name                   the model folder: a name under scripts/ (or its key)
max_concurrency                                                 Map MaxConcurrency (deploy-time; recorded only)
device                                                          cpu (default) or cuda
metrics                                                         wall-clock (default) or reference: the
                                                                record's definitions (inference.refmetrics)
tolerated_failure_percentage                                    failed ranks tolerated before the run fails (0)
run_id                                                          run name (default: the execution name)
resume                                                          re-run only the failed or missing ranks of run_id
prior_wall_time_s                                               (a resume) the wall time of the run's earlier executions
=============================  ===============================  =========================================

Reference keys that carry nothing this pipeline needs (``script``,
``object_type``) are accepted and ignored. Any other unknown key that looks like
a typo of a known one is rejected with a suggestion.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inference.errors import PayloadError

IGNORED_REFERENCE_KEYS = frozenset({"script", "object_type"})
DEFAULT_MODEL_KEY = "scripts/astromae"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def _aliases(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def clean_prefix(value: str, field: str, *, bucket: str | None = None) -> str:
    """Normalise an S3 prefix; refuse ``..``, absolute paths and other buckets."""
    text = value.strip()
    if text.startswith("s3://"):
        other, _, text = text[len("s3://") :].partition("/")
        if bucket is not None and other != bucket:
            raise ValueError(f"{field} {value!r} points outside the bucket {bucket!r}")
    if text.startswith("/"):
        raise ValueError(f"{field} {value!r} must be relative to the bucket (no leading '/')")
    parts = [p for p in text.split("/") if p]
    if any(p in ("..", ".") for p in parts):
        raise ValueError(f"{field} {value!r} must not contain '..' or '.' segments")
    return "/".join(parts)


_STRICT_NUMBERS = ("world_size", "batch_size", "max_concurrency", "tolerated_failure_percentage")


def _names(model: type[BaseModel], field: str) -> list[str]:
    """A field's name and its aliases."""
    alias = model.model_fields[field].validation_alias
    return [field, *(str(c) for c in alias.choices)] if isinstance(alias, AliasChoices) else [field]


def near_miss(key: str, known: set[str]) -> str | None:
    """The known key ``key`` was probably meant to be: a close spelling, or one that starts the same
    (``model`` for ``model_key``, ``tolerated_failures`` for ``tolerated_failure_percentage``)."""
    lowered = key.lower()
    close = difflib.get_close_matches(lowered, sorted(known), n=1, cutoff=0.75)
    if close:
        return close[0]
    for name in sorted(known, key=len):
        shared = len(os.path.commonprefix([lowered, name.lower()]))
        if shared >= min(len(lowered), len(name)) or shared >= 8:
            return name
    return None


class Payload(BaseModel):
    """The execution input (see the module docstring for keys and aliases)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    bucket: str = Field(validation_alias=_aliases("bucket", "S3_BUCKET"), min_length=3)
    data_bucket: str | None = Field(default=None, validation_alias=_aliases("data_bucket"))
    data_prefix: str = Field(default="data", validation_alias=_aliases("data_prefix", "DATA_PREFIX"))
    world_size: int | None = Field(default=None, validation_alias=_aliases("world_size", "file_limit"))
    batch_size: int = Field(default=512)
    result_prefix: str | None = Field(default=None, validation_alias=_aliases("result_prefix", "result_path"))
    model_key: str = Field(default=DEFAULT_MODEL_KEY, validation_alias=_aliases("model_key", "S3_object_name"))
    max_concurrency: int | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    metrics: Literal["wall-clock", "reference"] = "wall-clock"
    tolerated_failure_percentage: float = Field(default=0.0, ge=0.0, le=100.0)
    run_id: str | None = None
    resume: bool = False
    prior_wall_time_s: float = Field(default=0.0, ge=0.0)  # a resume: the wall time of the run's earlier executions

    @model_validator(mode="before")
    @classmethod
    def _reject_typos(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"the payload must be a JSON object, got {type(data).__name__}")
        known: set[str] = set()
        for name, field in cls.model_fields.items():
            known.add(name)
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                known.update(str(choice) for choice in alias.choices)
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            given = {key: data[key] for key in (alias.choices if isinstance(alias, AliasChoices) else []) if key in data}
            if len({repr(value) for value in given.values()}) > 1:
                raise ValueError(f"conflicting values for {name!r}: {', '.join(f'{k}={v!r}' for k, v in given.items())}")
        if "bucket" not in data and "S3_BUCKET" not in data and "data_bucket" in data:
            data = {**data, "bucket": data["data_bucket"]}  # the reference's data_bucket alone names the bucket
        for key in data:
            if key in known or key in IGNORED_REFERENCE_KEYS:
                continue
            close = near_miss(str(key), known)
            if close:
                raise ValueError(f"unknown key {key!r}: did you mean {close!r}?")
        for name in _STRICT_NUMBERS:  # JSON true/false are not numbers, though Python's bool is an int
            for key in _names(cls, name):
                if isinstance(data.get(key), bool):
                    raise ValueError(f"{key}: expected a number, got {str(data[key]).lower()}")
        return data

    @field_validator("world_size")
    @classmethod
    def _world_size(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"world_size must be >= 1, got {value}")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"batch_size must be >= 1, got {value}")
        return value

    @field_validator("max_concurrency")
    @classmethod
    def _max_concurrency(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {value}")
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not _RUN_ID.match(value):
            raise ValueError(f"run_id {value!r} must be 1-80 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _prefixes(self) -> "Payload":
        clean_prefix(self.data_prefix, "data_prefix", bucket=self.data_bucket or self.bucket)
        if self.result_prefix is not None:
            if not clean_prefix(self.result_prefix, "result_prefix", bucket=self.bucket):
                raise ValueError("result_prefix must not be empty")
        if self.resume and not self.run_id:
            raise ValueError("resume needs the run_id of the run to resume")
        return self

    @property
    def source_bucket(self) -> str:
        return self.data_bucket or self.bucket

    @property
    def partition_prefix(self) -> str:
        prefix = clean_prefix(self.data_prefix, "data_prefix", bucket=self.source_bucket)
        return f"{prefix}/" if prefix else ""

    def results_prefix(self, run_id: str) -> str:
        if self.result_prefix:
            return clean_prefix(self.result_prefix, "result_prefix", bucket=self.bucket)
        return f"results/{run_id}"

    def model_object_key(self) -> str:
        """The model folder's prefix: scripts/<name> for a folder name; a file key means its folder."""
        key = clean_prefix(self.model_key, "model_key", bucket=self.bucket)
        if key.endswith(".pt") or key.endswith(".py"):
            key = key.rpartition("/")[0]
        if not key.startswith("scripts/"):
            key = f"scripts/{key}"
        return key


class RankItem(BaseModel):
    """One item of the manifest: everything one Infer invocation needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    rank: int = Field(ge=1)
    world_size: int = Field(ge=1)
    bucket: str
    data_bucket: str
    partitions: list[str] = Field(min_length=1)
    batch_size: int = Field(ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    result_prefix: str
    model_key: str
    metrics: Literal["wall-clock", "reference"] = "wall-clock"
    model_digest: str | None = None  # the model folder's digest when Initialize read it: a warm worker holding it skips the manifest GET


class RunConfig(BaseModel):
    """What Initialize hands to the Map and to Summarize."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    bucket: str
    manifest_key: str
    result_prefix: str
    world_size: int
    ranks_planned: list[int]
    batch_size: int
    tolerated_failure_percentage: float = 0.0
    execution_start: str | None = None
    resume: bool = False
    data_prefix: str = ""
    model_key: str = ""
    prior_wall_time_s: float = 0.0


def parse_payload(data: Any) -> Payload:
    """Validate a payload; raise PayloadError naming the first bad field."""
    try:
        return Payload.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(exc, "payload")) from None


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """One line naming the first bad field and the problem."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "(top level)"
    message = first.get("msg", "invalid").removeprefix("Value error, ")
    if first.get("type") == "missing":
        return f"{what}: missing required key {location!r}"
    return f"{what}: {location}: {message}" if location != "(top level)" else f"{what}: {message}"
