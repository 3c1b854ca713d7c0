"""What a Lambda function's process can import: its runtime (zip functions) or its image (container-image functions).

AWS's Python zip runtime gives a function its zip (``LAMBDA_TASK_ROOT``), the
standard library and the SDK the runtime ships (boto3, botocore and their
dependencies), nothing else; the runtime client lives in ``/var/runtime``
(``PYTHONPATH``). Here a *runtime folder* plays ``/var/runtime``: links to
exactly those SDK packages of the worker's interpreter plus the worker
bootstrap (``bootstrap.py`` -> ``emulator/worker.py``), and a zip worker runs as
``python -s -S -m bootstrap`` (no site-packages) with ``PYTHONPATH`` = that
folder and the task root as its working directory, so ``sys.path`` is [task
root, runtime folder, standard library] as on AWS. A container-image function
runs in the project's environment (what ``inference/Dockerfile`` installs: the
interpreter's site-packages kept, ``python -s -m bootstrap``) with the image's
files as its task root and the image's CMD as its handler.

:func:`lambda_environment` builds a worker's variables from nothing (Lambda's
reserved and unreserved ones, no host variable; ``PATH`` is AWS's with the runtime
folder's ``bin/`` in place of ``/var/lang/bin``).

Images offline: deploy "builds" an image into a *local image store* folder
(:func:`save_local_image`: the image's task files and its CMD), keyed by the
ImageUri; the engines (moto's seam, LocalStack's executor) look it up by URI.

Artifacts: ``$COSMICAI_CACHE/runtimes/<runtime>-<key>/`` (the runtime folder:
symlinks, ``bin/python3``) and ``$COSMICAI_HOME/images/<sha256 of uri>/``
(``image.json`` and ``task/``). ``python -m emulator.runtimes <runtime>``
prints the runtime folder (LocalStack's executor asks the worker's interpreter so).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from emulator.state import cache_home, home

SDK_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six")  # what AWS's Python runtimes ship
LAMBDA_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"  # AWS's PATH without /var/lang/bin (the runtime folder's bin/ plays it)
BOOTSTRAP = "bootstrap"  # the worker's module name in the runtime folder, as AWS's /var/runtime/bootstrap.py
_WORKER = Path(__file__).with_name("worker.py")


class ImageNotFound(LookupError):
    """An image function names an ImageUri that no deploy built into the local image store."""


def distribution_paths(distribution: str) -> list[Path]:
    """The top-level modules and packages (and the ``.dist-info``) that ``distribution`` installed in this interpreter."""
    dist = importlib.metadata.distribution(distribution)
    base = Path(str(dist.locate_file("")))
    tops = set()
    for file in dist.files or []:
        first = Path(str(file)).parts[0]
        if first in ("..", "__pycache__") or first.endswith(".pth") or first == "bin":
            continue
        tops.add(first)
    return sorted(base / top for top in tops if (base / top).exists())


def _key(runtime: str) -> str:
    """The runtime folder's key: the runtime, this interpreter, the worker, and each SDK distribution's version and
    location (an upgrade changes them), read from metadata alone: listing botocore's files takes 0.2 s a run."""
    digest = hashlib.sha256(f"{runtime}\n{sys.executable}\n{_WORKER}\n".encode())
    for name in SDK_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        digest.update(f"{name}=={dist.version}@{dist.locate_file('')}\n".encode())
    return digest.hexdigest()[:12]


def runtime_dir(runtime: str) -> Path:
    """The runtime folder for ``runtime`` (``python3.x``) of this interpreter: built once, reused while it matches."""
    if not runtime.startswith("python"):
        raise ValueError(f"runtime {runtime!r}: the emulator runs Python runtimes only")
    folder = cache_home() / "runtimes" / f"{runtime}-{_key(runtime)}"
    if (folder / ".complete").is_file():
        return folder
    paths = [path for name in SDK_DISTRIBUTIONS for path in distribution_paths(name)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for path in paths:
        (staging / path.name).symlink_to(path)
    (staging / f"{BOOTSTRAP}.py").symlink_to(_WORKER)  # always the project's current worker
    (staging / "bin").mkdir()
    for name in ("python3", "python"):
        (staging / "bin" / name).symlink_to(getattr(sys, "_base_executable", sys.executable))
    (staging / ".complete").write_text(json.dumps({"runtime": runtime, "python": sys.executable}) + "\n")
    try:
        staging.rename(folder)
    except OSError:  # another process built it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def runtime_dir_of(runtime: str, python: str) -> Path:
    """The runtime folder built by interpreter ``python`` (another one than this: asked in a subprocess)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return runtime_dir(runtime)
    out = subprocess.run([python, "-m", "emulator.runtimes", runtime], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{python} -m emulator.runtimes {runtime} failed: {out.stderr.strip()[-500:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def worker_command(python: str, image: bool) -> list[str]:
    """The worker's command line: a zip function without site-packages (``-S``), an image function with the project's."""
    return [python, "-s", "-u", *(() if image else ("-S",)), "-m", BOOTSTRAP]


def vendor(distributions: tuple[str, ...], folder: Path) -> Path:
    """Copy what ``distributions`` installed in this interpreter into ``folder`` (offline vendoring for a zip)."""
    if (folder / ".complete").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for name in distributions:
        for path in distribution_paths(name):
            if path.is_dir():
                shutil.copytree(path, staging / path.name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            else:
                shutil.copy2(path, staging / path.name)
    (staging / ".complete").write_text(" ".join(distributions) + "\n")
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def lambda_environment(spec: Any, endpoint_url: str, threads: int, runtime_folder: str, handler: str = "") -> dict[str, str]:
    """The variables of a Lambda environment for ``spec`` (an ``emulator.environment.FunctionSpec``), built from nothing (no host variable leaks in): Lambda's
    reserved and unreserved ones (``PATH``: AWS's, with the runtime folder's ``bin/`` as ``/var/lang/bin``;
    ``PYTHONPATH`` = the runtime folder, as ``/var/runtime``), the endpoint and dummy credentials, the emulator's torch
    thread policy (``COSMICAI_TORCH_THREADS``, ``OMP_NUM_THREADS``), then the function's own. Per environment,
    ``Environment.start`` adds ``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_LOG_STREAM_NAME`` and ``TMPDIR``."""
    env = {
        "PATH": f"{runtime_folder}/bin:{LAMBDA_PATH}",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": runtime_folder,
        "LAMBDA_RUNTIME_DIR": runtime_folder,
        "_HANDLER": handler or spec.handler,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",  # an image function: its base image's runtime
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "COSMICAI_TORCH_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
    }
    env.update(dict(spec.environment))
    return env


# -- the local image store ------------------------------------------------------------


def image_folder(uri: str) -> Path:
    return home() / "images" / hashlib.sha256(uri.encode()).hexdigest()[:24]


def save_local_image(uri: str, files: bytes, command: list[str]) -> Path:
    """'Build' image ``uri`` offline: its task files (a zip) and its CMD (the handler), for the engines to run."""
    folder = image_folder(uri)
    if (folder / "image.json").is_file():
        return folder  # the URI's tag is the content's hash: same URI, same image
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".image-", dir=folder.parent))
    with zipfile.ZipFile(io.BytesIO(files)) as archive:
        archive.extractall(staging / "task")
    (staging / "image.json").write_text(json.dumps({"uri": uri, "cmd": list(command)}) + "\n")
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_local_image(uri: str) -> tuple[str, list[str]]:
    """The task folder and CMD of image ``uri``; ImageNotFound if no deploy built it here."""
    folder = image_folder(uri)
    try:
        image = json.loads((folder / "image.json").read_text())
    except (OSError, ValueError):
        raise ImageNotFound(
            f"image {uri} is not in the local image store ({folder.parent}): the emulator runs only images that "
            "cosmicai's deploy built offline (emulator.runtimes.save_local_image)"
        ) from None
    return str(folder / "task"), list(image["cmd"])


if __name__ == "__main__":
    print(runtime_dir(sys.argv[1]))
