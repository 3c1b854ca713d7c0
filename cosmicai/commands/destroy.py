"""``cosmicai destroy``: delete every resource a deploy created (tagged with its stack)."""

from __future__ import annotations

import argparse

from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(destroy: argparse.ArgumentParser) -> None:
    destroy.add_argument("--target", default="aws", help="aws, or an emulator (embedded, localstack)")
    destroy.add_argument("--endpoint", default=None, help="an emulator's endpoint")
    destroy.add_argument("--region", default=None, help="AWS region (default: the standard chain's, else us-east-1)")
    destroy.add_argument("--stack", default="cosmicai", help="the stack whose resources go")
    destroy.add_argument("--bucket", default="cosmicai-data", help="the stack's bucket")
    destroy.add_argument("--force", action="store_true", help="also delete objects in the bucket that the stack did not write")


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from cosmicai.aws import destroy
    from cosmicai.targets import check_ready, resolve

    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    check_ready(target)
    if target.in_process:
        raise BadInput("no emulator is running: nothing to destroy")
    deleted = destroy(target, args.stack, args.bucket, force=args.force, log=console.out.print)
    console.out.print(f"{len(deleted)} resources of stack {args.stack!r} deleted" if deleted else f"nothing tagged with stack {args.stack!r} was found")
    return EXIT_OK
