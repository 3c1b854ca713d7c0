"""What a function's process can import and see (``emulator.runtimes``), and the moto attributes our seam reads
for it (a moto upgrade that renames one fails here, not silently in a run)."""

from __future__ import annotations

import io
import math
import zipfile

import pytest

from emulator.environment import FunctionSpec, InvocationResult, log_text
from emulator.runtimes import ImageNotFound, SDK_DISTRIBUTIONS, lambda_environment, load_local_image, runtime_dir, save_local_image, worker_command


def test_the_runtime_folder_holds_the_sdk_and_the_bootstrap_only(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMICAI_CACHE", str(tmp_path))
    folder = runtime_dir("python3.12")
    modules = {p.name for p in folder.iterdir() if not p.name.endswith(".dist-info") and not p.name.startswith(".")}
    assert modules == {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py", "bootstrap.py", "bin"}
    assert len(SDK_DISTRIBUTIONS) == 7 and runtime_dir("python3.12") == folder  # built once
    with pytest.raises(ValueError, match="nodejs20.x"):
        runtime_dir("nodejs20.x")


def test_an_sdk_upgrade_gets_a_new_runtime_folder(tmp_path, monkeypatch):
    """The folder is found from the SDK's metadata alone (no listing of its files); a new version is a new folder."""
    import importlib.metadata as metadata

    monkeypatch.setenv("COSMICAI_CACHE", str(tmp_path))
    before = runtime_dir("python3.12")
    real = metadata.distribution

    class Upgraded:
        def __init__(self, dist):
            self.dist = dist

        version = "99.0.0"

        def __getattr__(self, name):
            return getattr(self.dist, name)

    monkeypatch.setattr(metadata, "distribution", lambda name: Upgraded(real(name)) if name == "botocore" else real(name))
    after = runtime_dir("python3.12")
    assert after != before and (after / "botocore").is_symlink() and (before / ".complete").is_file()


def test_a_zip_worker_runs_without_site_packages_an_image_worker_with_them():
    assert "-S" in worker_command("python", image=False) and "-S" not in worker_command("python", image=True)


def test_the_environment_is_built_from_nothing(monkeypatch):
    monkeypatch.setenv("HOST_ONLY_SECRET", "x")
    spec = FunctionSpec(name="f", handler="app.h", code_sha="0", timeout_s=3, memory_mb=128, environment=(("MINE", "1"),), region="eu-west-1")
    env = lambda_environment(spec, "http://127.0.0.1:1", 1, "/rt")
    assert "HOST_ONLY_SECRET" not in env and env["MINE"] == "1"
    assert env["PATH"] == "/rt/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin" and env["PYTHONPATH"] == env["LAMBDA_RUNTIME_DIR"] == "/rt"


def test_an_image_is_found_by_its_uri_or_named_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMICAI_HOME", str(tmp_path))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "")
    save_local_image("r/img:1", buffer.getvalue(), ["app.main"])
    task, command = load_local_image("r/img:1")
    assert command == ["app.main"] and (tmp_path / "images").is_dir() and task.endswith("task")
    with pytest.raises(ImageNotFound, match="r/img:2"):
        load_local_image("r/img:2")


@pytest.mark.parametrize("ms", [0.4, 12.0, 12.01, 999.5])
def test_billed_duration_is_the_duration_rounded_up(ms):
    spec = FunctionSpec(name="f", handler="app.h", code_sha="0", timeout_s=3, memory_mb=128, environment=(), region="us-east-1")
    report = log_text(spec, InvocationResult("id", 1, False, "", ms / 1000, 0)).splitlines()[-1]
    assert f"\tBilled Duration: {math.ceil(ms)} ms" in report and "Init Duration" not in report


def test_moto_keeps_what_the_seam_reads_of_an_image_function():
    from moto import mock_aws
    import boto3

    from emulator.motoseam import function_spec

    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="us-east-1")
        lam.create_function(FunctionName="img", Role=role, PackageType="Image", Code={"ImageUri": "r/img:1"},
                            ImageConfig={"Command": ["app.main"]}, EphemeralStorage={"Size": 1024})
        from moto.awslambda.models import lambda_backends

        fn = lambda_backends["123456789012"]["us-east-1"].get_function("img")
        spec = function_spec(fn)
    assert (spec.image_uri, spec.image_command, spec.ephemeral_mb, spec.version) == ("r/img:1", ("app.main",), 1024, "$LATEST")
