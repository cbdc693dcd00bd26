"""Fixtures of the deployment tests (helpers in deploykit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl
import pytest
from deploykit import MODULES, REGIONS, pem

from skymesh.catalogue import load_catalogue
from skymesh.provisioning import certificate_plan


@pytest.fixture(scope="session")
def modules() -> dict[str, hcl.Module]:
    return {name: hcl.load_module(path) for name, path in MODULES.items()}


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every file `skymesh certs issue --for-catalogue regions/` writes (its names, from
    skymesh.provisioning), with stand-in PEM content naming the file."""
    out = tmp_path_factory.mktemp("certs")
    for spec in certificate_plan(load_catalogue(REGIONS)):
        (out / f"{spec.stem}.pem").write_text(pem("CERTIFICATE", spec.stem))
        (out / f"{spec.stem}.key").write_text(pem("PRIVATE KEY", spec.stem))
    (out / "bundle.pem").write_text(pem("CERTIFICATE", "bundle"))
    (out / "fabric.keys").write_text("00" * 32 + "\n")
    (out / "apps.yaml").write_text("shop: u4ruyrZIdcwGDKFczgkquPjHjd0lrRAfUZ1S5pvOTQA\n")
    return out


@pytest.fixture(scope="session")
def root_vars(certs_dir: Path) -> dict[str, Any]:
    """The root configuration's required variables."""
    return {"certs_dir": str(certs_dir), "apps_file": str(certs_dir / "apps.yaml")}

