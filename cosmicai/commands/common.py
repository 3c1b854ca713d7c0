"""What several commands share: the AWS options and the --model check."""

from __future__ import annotations

import argparse
from pathlib import Path

from cosmicai.errors import BadInput


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", default=None, help="AWS region (default: the standard chain's, else us-east-1)")
    parser.add_argument("--image-uri", default=None, help="aws: an Infer image already in ECR (default: build and push inference/Dockerfile)")
    parser.add_argument("--yes", action="store_true", help="aws: create resources and start executions without asking")


def check_model(spec: str) -> str:
    """``spec`` if it names a built-in model or an existing checkpoint file, else BadInput listing the names."""
    from inference.naming import builtin_names, is_builtin

    if not is_builtin(spec) and not Path(spec).is_file():
        raise BadInput(f"--model {spec!r}: not a built-in model ({builtin_names()}) and no such checkpoint file")
    return spec
