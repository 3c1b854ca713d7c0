"""Least-privilege IAM documents for the pipeline's two roles (every target deploys the same).

Lambda role: read the bucket's listing, read ``data/*`` and ``scripts/*``,
write ``results/*``, and write its own log groups (``/aws/lambda/<stack>-*``).
Step Functions role: invoke the four functions, read manifests under
``results/*``, and start/describe/stop the Distributed Map's child
executions of its own state machine. No ``"Action": "*"`` and no
``"Resource": "*"``.
"""

from __future__ import annotations

from typing import Any, Iterable

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
STATES_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def lambda_policy(*, bucket: str, data_bucket: str, stack_name: str, region: str, account: str) -> dict[str, Any]:
    buckets = sorted({bucket, data_bucket})
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListData", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{b}" for b in buckets]},
            {
                "Sid": "ReadInputs",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": sorted({f"arn:aws:s3:::{data_bucket}/data/*", f"arn:aws:s3:::{bucket}/data/*", f"arn:aws:s3:::{bucket}/scripts/*", f"arn:aws:s3:::{bucket}/results/*"}),
            },
            {"Sid": "WriteResults", "Effect": "Allow", "Action": ["s3:PutObject", "s3:PutObjectTagging"], "Resource": [f"arn:aws:s3:::{bucket}/results/*"]},
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{stack_name}-*", f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{stack_name}-*:*"],
            },
        ],
    }


def states_policy(*, bucket: str, function_arns: Iterable[str], state_machine_arn: str) -> dict[str, Any]:
    arns = sorted(function_arns)
    prefix, _, name = state_machine_arn.rpartition(":stateMachine:")
    executions = f"{prefix}:execution:{name}:*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "InvokeFunctions", "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": arns + [f"{arn}:*" for arn in arns]},
            {"Sid": "ReadManifest", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/results/*"]},
            {"Sid": "StartChildExecutions", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": [state_machine_arn, f"{state_machine_arn}:*"]},
            {"Sid": "ManageChildExecutions", "Effect": "Allow", "Action": ["states:DescribeExecution", "states:StopExecution"], "Resource": [executions]},
        ],
    }


def wildcards(policy: dict[str, Any]) -> list[str]:
    """Statements that grant ``*`` as an action or a resource (should be none)."""
    found = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in actions or any(a.endswith(":*") for a in actions) or "*" in resources:
            found.append(statement.get("Sid", "?"))
    return found
