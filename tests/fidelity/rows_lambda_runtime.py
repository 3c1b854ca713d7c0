"""Fidelity rows: Lambda runtimes, environment and logs (see ``fidelity_rows.py``)."""

from __future__ import annotations

from fidelity_rows import LAMBDA_API, LAMBDA_DG, SFN_API, SFN_DG, Row  # noqa: F401

ROWS: list[Row] = [
    Row(
        "zip-runtime-imports",
        "Lambda",
        "What a zip function can import",
        "its zip, the standard library and the SDK the runtime includes (boto3, botocore and their dependencies); "
        "anything else fails at init: `Runtime.ImportModuleError` `Unable to import module 'app': No module named 'x'`",
        f"{LAMBDA_DG}/python-package.html",
    ),
    Row(
        "image-function-cmd",
        "Lambda",
        "A container-image function (PackageType Image)",
        "runs the image's CMD (or `ImageConfig.Command`) as its handler, with the packages the image installs",
        f"{LAMBDA_DG}/images-create.html",
    ),
    Row(
        "reserved-environment",
        "Lambda",
        "Reserved environment variables and working directory",
        "`LAMBDA_TASK_ROOT` (the working directory), `LAMBDA_RUNTIME_DIR`, `_HANDLER`, `AWS_EXECUTION_ENV`=`AWS_Lambda_<runtime>`, "
        "`AWS_LAMBDA_FUNCTION_NAME`/`_MEMORY_SIZE`/`_VERSION`, `AWS_LAMBDA_INITIALIZATION_TYPE`=`on-demand`, "
        "`AWS_LAMBDA_LOG_GROUP_NAME`/`_LOG_STREAM_NAME`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `TZ`=`:UTC`, `LANG`=`en_US.UTF-8`",
        f"{LAMBDA_DG}/configuration-envvars.html",
    ),
    Row(
        "no-host-environment",
        "Lambda",
        "No host PATH/PYTHONPATH or other host variables",
        "`PATH` is Lambda's (`/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin`), `PYTHONPATH` = `LAMBDA_RUNTIME_DIR`; "
        "only Lambda's variables and the function's own",
        f"{LAMBDA_DG}/configuration-envvars.html",
    ),
    Row(
        "log-stream-per-environment",
        "Lambda",
        "Log streams",
        "one stream per execution environment (instance), named `YYYY/MM/DD/[$LATEST]<32 hex>`; its warm invocations "
        "append to it; the handler's `context.log_stream_name` names it",
        f"{LAMBDA_DG}/python-logging.html",
    ),
    Row(
        "init-output-logged",
        "Lambda",
        "Output printed while the module is imported (init)",
        "written to the environment's log stream, before the first `START`",
        f"{LAMBDA_DG}/python-logging.html",
    ),
    Row(
        "report-init-duration",
        "Lambda",
        "`Init Duration` in the REPORT line",
        "on the first invocation of an environment (a cold start) only",
        f"{LAMBDA_DG}/python-logging.html",
    ),
    Row(
        "report-billed-duration",
        "Lambda",
        "`Billed Duration` in the REPORT line",
        "`Duration` rounded up to the next millisecond",
        f"{LAMBDA_DG}/monitoring-metrics.html",
    ),
    Row(
        "ephemeral-storage-limit",
        "Lambda",
        "Writing to `/tmp` beyond `EphemeralStorage.Size` (default 512 MB)",
        "the write fails: `OSError` `[Errno 28] No space left on device`",
        f"{LAMBDA_DG}/configuration-ephemeral-storage.html",
    ),
    Row(
        "ephemeral-storage-warm",
        "Lambda",
        "`/tmp` across warm invocations",
        "kept: what an invocation wrote is there for the next invocation in the same environment",
        f"{LAMBDA_DG}/lambda-runtime-environment.html",
    ),
    Row(
        "init-phase-limit",
        "Lambda",
        "An init (import) longer than the 10 s init limit",
        "cut, and retried at the first invocation within the function's Timeout: it succeeds if it fits, else `Sandbox.Timedout`",
        f"{LAMBDA_DG}/lambda-runtime-environment.html",
    ),
]
