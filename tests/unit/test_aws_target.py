"""The aws target, deployed under moto's mock_aws (no network): packaging, least privilege,
idempotence, destroy, and the confirmation that guards every paid action."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from moto import mock_aws

from cosmicai import aws, iam
from cosmicai.deploy import TAG_KEY, Stack, deploy, put_tagged
from cosmicai.targets import resolve

REGION = "us-west-2"  # apart from the embedded emulator's us-east-1 state in the same process
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/cosmicai-runtime:0123456789abcdef"


@pytest.fixture()
def mocked(monkeypatch):
    """mock_aws without resetting moto's state: a session emulator may share this process."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "COSMICAI_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    from emulator.sfn_patches import patch_step_functions

    patch_step_functions()  # moto as AWS: ListStateMachineVersions answers, as AWS's does
    mock = mock_aws()
    mock.start(reset=False)
    yield resolve("aws", region=REGION)
    mock.stop(remove_data=False)


@pytest.fixture()
def stack(tmp_path):
    vendor = tmp_path / "vendor"
    (vendor / "pydantic").mkdir(parents=True)
    (vendor / "pydantic" / "__init__.py").write_text("# stand-in for the vendored package\n")
    name = f"cai-{uuid.uuid4().hex[:8]}"
    return Stack(name=name, bucket=f"{name}-bucket", infer_memory_mb=10_240, infer_timeout_s=600, max_concurrency=41, image_uri=IMAGE, vendor_dir=vendor)


def _snapshot(target, stack):
    lam, sfn, iam_client = target.client("lambda"), target.client("stepfunctions"), target.client("iam")
    functions = {}
    for key in ("initialize", "infer", "record-failure", "summarize"):
        config = lam.get_function_configuration(FunctionName=stack.function_name(key))
        functions[key] = {k: config.get(k) for k in ("LastModified", "RevisionId", "CodeSha256", "MemorySize", "Timeout")}
    machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == stack.state_machine_name)
    described = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
    policies = {role: iam_client.get_role_policy(RoleName=f"{stack.name}-{role}", PolicyName=f"{stack.name}-{role}-policy")["PolicyDocument"] for role in ("lambda", "states")}
    return functions, described.get("revisionId"), described["definition"], policies


def test_functions_are_packaged_as_the_aws_target_needs(mocked, stack):
    deploy(mocked, stack)
    lam = mocked.client("lambda")
    infer = lam.get_function(FunctionName=stack.function_name("infer"))
    assert infer["Configuration"]["PackageType"] == "Image"
    assert infer["Code"]["ImageUri"] == IMAGE
    assert (infer["Configuration"]["MemorySize"], infer["Configuration"]["Timeout"]) == (10_240, 600)
    for key in ("initialize", "record-failure", "summarize"):
        config = lam.get_function_configuration(FunctionName=stack.function_name(key))
        assert config["PackageType"] == "Zip" and config["Runtime"] == "python3.11"
        assert config["MemorySize"] == 256
    code = lam.get_function(FunctionName=stack.function_name("summarize"))
    assert code["Configuration"]["Handler"] == "inference.handlers.summarize"
    assert lam.list_tags(Resource=infer["Configuration"]["FunctionArn"])["Tags"][TAG_KEY] == stack.name


def test_zip_functions_carry_the_vendored_dependencies(stack):
    import zipfile

    from cosmicai.deploy import package_handlers

    names = zipfile.ZipFile(io.BytesIO(package_handlers(vendor_dir=stack.vendor_dir))).namelist()
    assert "pydantic/__init__.py" in names and "inference/handlers.py" in names
    assert not any(name.startswith(("cosmicai/", "emulator/", "stepfn/", "tests/")) for name in names)
    assert package_handlers(vendor_dir=stack.vendor_dir) == package_handlers(vendor_dir=stack.vendor_dir)


def test_iam_policies_are_least_privilege(mocked, stack):
    deployment = deploy(mocked, stack)
    client = mocked.client("iam")
    lam_doc = client.get_role_policy(RoleName=f"{stack.name}-lambda", PolicyName=f"{stack.name}-lambda-policy")["PolicyDocument"]
    states_doc = client.get_role_policy(RoleName=f"{stack.name}-states", PolicyName=f"{stack.name}-states-policy")["PolicyDocument"]
    lam_doc = json.loads(lam_doc) if isinstance(lam_doc, str) else lam_doc
    states_doc = json.loads(states_doc) if isinstance(states_doc, str) else states_doc
    assert iam.wildcards(lam_doc) == [] and iam.wildcards(states_doc) == []
    resources = [r for s in lam_doc["Statement"] for r in s["Resource"]]
    assert all(r.startswith((f"arn:aws:s3:::{stack.bucket}", f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/{stack.name}-")) for r in resources)
    writes = next(s for s in lam_doc["Statement"] if "s3:PutObject" in s["Action"])
    assert writes["Resource"] == [f"arn:aws:s3:::{stack.bucket}/results/*"]
    invoke = next(s for s in states_doc["Statement"] if s["Action"] == ["lambda:InvokeFunction"])
    unversioned = {arn.rsplit(":", 1)[0] for arn in deployment.function_arns.values()}  # the state machine invokes published versions
    assert {r for r in invoke["Resource"] if not r.endswith(":*")} == unversioned
    assert {f"{arn}:*" for arn in unversioned} <= set(invoke["Resource"])
    start = next(s for s in states_doc["Statement"] if s["Action"] == ["states:StartExecution"])
    machine = deployment.state_machine_arn.rsplit(":", 1)[0]  # runs start on a published version of it
    assert start["Resource"] == [machine, f"{machine}:*"]


def test_a_second_deploy_changes_nothing(mocked, stack):
    deploy(mocked, stack)
    before = _snapshot(mocked, stack)
    deploy(mocked, stack)
    assert _snapshot(mocked, stack) == before


def test_a_changed_setting_is_updated_in_place(mocked, stack):
    from dataclasses import replace

    deploy(mocked, stack)
    deploy(mocked, replace(stack, infer_memory_mb=8192))
    assert mocked.client("lambda").get_function_configuration(FunctionName=stack.function_name("infer"))["MemorySize"] == 8192


def _tagged_left(target, stack):
    left = []
    lam, sfn, iam_client, logs, s3 = (target.client(s) for s in ("lambda", "stepfunctions", "iam", "logs", "s3"))
    left += [f["FunctionName"] for f in lam.list_functions()["Functions"] if lam.list_tags(Resource=f["FunctionArn"])["Tags"].get(TAG_KEY) == stack.name]
    left += [m["name"] for m in sfn.list_state_machines()["stateMachines"] if {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=m["stateMachineArn"])["tags"]}.get(TAG_KEY) == stack.name]
    left += [r["RoleName"] for r in iam_client.list_roles()["Roles"] if {t["Key"]: t["Value"] for t in iam_client.list_role_tags(RoleName=r["RoleName"])["Tags"]}.get(TAG_KEY) == stack.name]
    left += [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"] if logs.list_tags_log_group(logGroupName=g["logGroupName"]).get("tags", {}).get(TAG_KEY) == stack.name]
    left += [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] == stack.bucket]
    return left


def test_destroy_leaves_nothing_tagged_behind(mocked, stack):
    deploy(mocked, stack)
    aws.ensure_repository(mocked.client("ecr"), aws.repository_name(stack), stack.tags)
    put_tagged(mocked.client("s3"), stack.bucket, "results/run-1/summary.json", b"{}", stack.tags)
    assert _tagged_left(mocked, stack)
    deleted = aws.destroy(mocked, stack.name, stack.bucket)
    assert f"bucket {stack.bucket}" in deleted and f"ECR repository {aws.repository_name(stack)}" in deleted
    assert _tagged_left(mocked, stack) == []


def test_destroy_refuses_a_bucket_holding_objects_it_did_not_write(mocked, stack):
    deploy(mocked, stack)
    mocked.client("s3").put_object(Bucket=stack.bucket, Key="users-own/notes.txt", Body=b"mine")
    with pytest.raises(aws.RefusedDestroy, match="users-own/notes.txt"):
        aws.destroy(mocked, stack.name, stack.bucket)
    assert _tagged_left(mocked, stack)  # nothing was deleted
    aws.destroy(mocked, stack.name, stack.bucket, force=True)
    assert _tagged_left(mocked, stack) == []


def test_the_confirmation_shows_the_plan_and_refuses_without_yes_on_a_non_interactive_stdin(mocked, stack):
    shown = []
    plan = aws.plan(mocked, stack, world_size=41, samples_per_rank=5113)
    assert plan.account == "123456789012" and plan.region == REGION
    with pytest.raises(aws.NotConfirmed, match="--yes"):
        aws.confirm(plan, yes=False, show=shown.append, stdin=io.StringIO(""))
    text = "\n".join(shown)
    assert "123456789012" in text and REGION in text and stack.function_name("infer") in text and "Estimated cost" in text
    assert "testing" not in text  # never the keys
    aws.confirm(plan, yes=True, show=shown.append, stdin=io.StringIO(""))


def test_cli_run_on_aws_refuses_without_yes_and_creates_nothing(mocked, stack, capsys, monkeypatch):
    from cosmicai.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["run", "--target", "aws", "--region", REGION, "--model", "tiny", "--samples", "16", "--stack", stack.name, "--bucket", stack.bucket, "--image-uri", IMAGE])
    assert code == 2
    assert "without --yes" in capsys.readouterr().err
    assert stack.bucket not in [b["Name"] for b in mocked.client("s3").list_buckets()["Buckets"]]
