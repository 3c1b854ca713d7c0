"""Environment variable names the handlers read (one place, as Powertools does)."""

TARGET = "COSMICAI_TARGET"  # embedded | localstack | aws: recorded in the summary only
INFER_MEMORY_MB = "COSMICAI_INFER_MEMORY_MB"  # the Infer function's MemorySize, for the cost model
INFER_TIMEOUT_S = "COSMICAI_INFER_TIMEOUT_S"  # the Infer function's Timeout, for the cost model
TORCH_THREADS = "COSMICAI_TORCH_THREADS"  # torch intra-op threads per worker (unset: torch's default)
FUNCTION_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"  # set by Lambda (and by our runner)
STACK = "COSMICAI_STACK"  # the deployment's name: objects the pipeline writes are tagged with it
