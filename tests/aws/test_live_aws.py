"""Live suite: the small pipeline on a real AWS account. Opt-in: COSMICAI_AWS_TESTS=1.

Costs a few cents; needs credentials from the standard chain, Docker (to build
and push the image) and network access. Everything it creates is tagged with a
fresh stack name and destroyed at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("COSMICAI_AWS_TESTS") != "1", reason="live AWS suite: set COSMICAI_AWS_TESTS=1 to run it on your account")


def test_small_pipeline_runs_on_aws_and_is_torn_down(tmp_path):
    stack = f"cosmicai-live-{uuid.uuid4().hex[:6]}"
    cli = [sys.executable, "-m", "cosmicai.cli"]
    common = ["--stack", stack, "--bucket", f"{stack}-bucket"]
    try:
        run = subprocess.run([*cli, "run", "--target", "aws", "--yes", "--model", "tiny", "--samples", "64", "--world-size", "2", "--memory", "2048", "--json", "--out", str(tmp_path / "out"), *common], capture_output=True, text=True, timeout=3600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert '"ranks_succeeded": 2' in run.stdout
    finally:
        down = subprocess.run([*cli, "destroy", "--target", "aws", "--force", *common], capture_output=True, text=True, timeout=900)
        assert down.returncode == 0, down.stderr[-3000:]
