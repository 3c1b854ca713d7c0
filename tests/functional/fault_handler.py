"""A test-only Infer handler that injects real faults into chosen ranks.

Deployed beside the real handlers (as an extra file of the code zip) with the
Infer function's handler set to ``fault_handler.infer``. ``COSMICAI_TEST_FAULTS``
is a JSON object {rank: fault}; other ranks run the real handler unchanged.
Faults: ``timeout`` (sleep past the function's Timeout), ``oom`` (allocate
past MemorySize), ``crash`` (the process dies without a Python exception),
``error`` (a handler exception), ``missing`` (the rank's partition is deleted
from S3 just before the real handler reads it). Every invocation prints
``fault-injection rank=<r> fault=<f>`` so tests can count retries.
"""

import json
import os
import time


from inference.infer import handler as real_infer


class InjectedError(Exception):
    """The fault this module raises for ``error``."""


def infer(event, context):
    fault = json.loads(os.environ.get("COSMICAI_TEST_FAULTS", "{}")).get(str(event.get("rank")))
    print(f"cosmicai run={event.get('run_id')} rank={event.get('rank')}", flush=True)  # the run marker every handler logs first
    print(f"fault-injection rank={event.get('rank')} fault={fault}", flush=True)
    if fault == "missing":
        import boto3

        for key in event["partitions"]:
            boto3.client("s3").delete_object(Bucket=event["data_bucket"], Key=key)
    if fault == "timeout":
        time.sleep(3600)
    elif fault == "oom":
        hoard = []
        while True:
            hoard.append(bytearray(64 * 2**20))
            for i in range(0, len(hoard[-1]), 4096):
                hoard[-1][i] = 1
    elif fault == "crash":
        print("about to crash", flush=True)
        os._exit(139)
    elif fault == "error":
        raise InjectedError(f"injected failure in rank {event.get('rank')}")
    return real_infer(event, context)
