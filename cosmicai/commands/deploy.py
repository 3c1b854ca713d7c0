"""``cosmicai deploy``: the pipeline and a model folder into a running emulator, LocalStack or AWS."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cosmicai.argtypes import positive_int
from cosmicai.commands.common import add_aws_arguments, check_model
from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(deploy: argparse.ArgumentParser) -> None:
    deploy.add_argument("--target", default=None, help="embedded (a running emulator), localstack or aws (default: $COSMICAI_TARGET, else embedded)")
    deploy.add_argument("--endpoint", default=None, help="the emulator's endpoint (default: the one 'emulator up' or 'localstack up' registered)")
    deploy.add_argument("--stack", default="cosmicai", help="name prefix of the deployed resources (letters, digits, -)")
    deploy.add_argument("--bucket", default="cosmicai-data", help="the S3 bucket for data/, scripts/ and results/")
    deploy.add_argument("--model", default="astromae", help="astromae (default), tiny or a checkpoint file (any format --model of run takes)")
    deploy.add_argument("--model-folder", type=Path, help="your own model folder, uploaded under scripts/<folder name>/")
    deploy.add_argument("--max-concurrency", type=positive_int, default=2, help="the Map's MaxConcurrency")
    deploy.add_argument("--memory", type=positive_int, default=3008, help="Infer function MemorySize in MB")
    deploy.add_argument("--timeout", type=positive_int, default=900, help="Infer function Timeout in seconds")
    add_aws_arguments(deploy)


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from cosmicai.deploy import Stack, deploy, upload_model_folder
    from cosmicai.runs import model_folder
    from cosmicai.targets import check_ready, resolve

    check_model(args.model)
    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    check_ready(target)
    if target.in_process:
        raise BadInput("no emulator is running: start one with 'cosmicai emulator up --detach' (or pass --endpoint)")
    stack = Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=args.max_concurrency)
    if target.name == "aws":
        from cosmicai import aws

        stack = aws.prepare_stack(target, stack, yes=args.yes, image_uri=args.image_uri, show=console.err.print)
    deployment = deploy(target, stack)
    with tempfile.TemporaryDirectory() as workdir:
        name, folder = model_folder(args.model, args.model_folder, Path(workdir))
        key = upload_model_folder(target.client("s3"), stack.bucket, name, folder, stack.tags)
    console.out.print(f"deployed to {target.endpoint_url or 'AWS ' + target.region}: state machine {deployment.state_machine_arn}")
    console.out.print(f"bucket s3://{stack.bucket} (results/, scripts/), model folder s3://{stack.bucket}/{key}/ (payload model_key {name!r})")
    return EXIT_OK
