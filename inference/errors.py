"""One exception class per failure mode.

Step Functions Retry/Catch match on the class name (the Lambda ``errorType``),
so the names are part of the pipeline's contract: ``stepfn/pipeline.asl.json``
retries only the transient ones and never the data errors below.
"""


class CosmicAIError(Exception):
    """Base class of every error this project raises on purpose."""


class PartitionError(CosmicAIError, ValueError):
    """A partition file is missing, corrupt, unsafe or has wrong shapes/dtypes/values."""


class CheckpointMismatch(CosmicAIError, ValueError):
    """A checkpoint's keys or shapes do not match the model configuration."""


class UnknownModel(CosmicAIError, ValueError):
    """A model name that is neither a built-in config nor a checkpoint file."""


class PayloadError(CosmicAIError, ValueError):
    """The execution input (payload) is malformed; raised before any worker starts."""


class RanksFailed(CosmicAIError):
    """Summarize found missing or failed ranks beyond the tolerated percentage."""
