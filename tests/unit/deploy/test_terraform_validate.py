"""`terraform validate` on the whole configuration, with the real AWS provider's schema: every
resource type, argument and block checked as terraform checks them. Terraform and its
providers cannot be installed on the project's machines (no registry.terraform.io); where a
`terraform` binary and a local copy of the hashicorp/aws provider happen to be (a plugin
directory: SKYMESH_TF_PLUGINS, else /opt/tf-plugins), this runs, and it skips elsewhere
saying so. The rest of tests/unit/deploy checks the configuration without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from deploykit import terraform_binary

ROOT = Path(__file__).resolve().parents[3]
PLUGINS = Path(os.environ.get("SKYMESH_TF_PLUGINS", "/opt/tf-plugins"))
AWS_PLUGIN = PLUGINS / "registry.terraform.io" / "hashicorp" / "aws"


@pytest.mark.skipif(terraform_binary() is None or not AWS_PLUGIN.is_dir(),
                    reason="no terraform binary and hashicorp/aws plugin directory here "
                    f"({PLUGINS}; SKYMESH_TF_PLUGINS names another)")
def test_terraform_validates_the_configuration_with_the_aws_provider(tmp_path: Path):
    # the root reads ../regions and ../deploy: the same layout, in a copy (init writes
    # .terraform/ and a lock file)
    for part in ("terraform", "regions", "deploy"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1",
           "CHECKPOINT_DISABLE": "1"}

    def terraform(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([terraform_binary(), *args], cwd=tmp_path / "terraform",
                              env=env, capture_output=True, text=True, timeout=300)

    init = terraform("init", "-backend=false", "-input=false", "-no-color",
                     f"-plugin-dir={PLUGINS}")
    assert init.returncode == 0, init.stdout + init.stderr
    proc = terraform("validate", "-json", "-no-color")
    report = json.loads(proc.stdout)
    problems = [f"{d['severity']}: {d['summary']}: {d.get('detail', '')} "
                f"({d.get('range', {}).get('filename', '')})"
                for d in report["diagnostics"]]
    assert report["valid"] and proc.returncode == 0, "\n".join(problems)
    # warnings too: a deprecated argument today is a refused one in the next major version
    assert not problems, "\n".join(problems)
