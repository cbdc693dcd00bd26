"""The cloud-init the terraform modules hand their instances: rendered in Python as
`templatefile` would render it (hcl.py) from what the root configuration passes the modules,
for two regions (London, and Beijing in the AWS China partition) and both ways of delivering
keys; then checked as cloud-config (and against cloud-init's own schema where Debian's
cloud-init is installed), its relay and controller configurations loaded with the project's
own loader, its systemd units compared with deploy/systemd/, and the secrets each node may
read checked to be its own."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import hcl
import pytest
import yaml
from deploykit import (
    CONTROLLER_IPS,
    DATA_BUCKET,
    DEPLOY,
    MODULES,
    REGIONS,
    controllers_evaluator,
    region_evaluator,
    relay_ip,
    root_evaluator,
    terraform_binary,
    terraform_console,
)

from skymesh.cli.configs import CONTROLLER_CONFIG, RELAY_CONFIG
from skymesh.config import ConfigError

# cloud-config's top-level keys that these templates may use (of the many cloud-init has)
KNOWN_KEYS = {"package_update", "package_upgrade", "packages", "users", "groups",
              "manage_etc_hosts", "write_files", "runcmd", "bootcmd"}
UNITS = ["skymesh-relay.service", "skymesh-controller.service", "skymesh-tls-refresh.service",
         "skymesh-tls-refresh.timer", "skymesh-controller-sync.service",
         "skymesh-controller-sync.timer", "etcd.service.d/skymesh.conf"]
SCHEMA_PATHS = [os.environ.get("CLOUD_INIT_SCHEMA", ""),
                # where `make test` puts it (Makefile, deploy-tools)
                str(Path(__file__).resolve().parents[3] / ".cache" / "cloud-init-schema.json"),
                "/usr/lib/python3/dist-packages/cloudinit/config/schemas/"
                "schema-cloud-config-v1.json"]
MODES = ["secretsmanager", "inline"]


@functools.lru_cache(maxsize=64)
def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    data = load_yaml(text)
    assert isinstance(data, dict)
    assert set(data) <= KNOWN_KEYS, set(data) - KNOWN_KEYS
    # within what EC2 takes as user data, compressed as the modules send it
    assert len(base64.b64encode(gzip.compress(text.encode()))) < 16384
    return data


def files(data: dict) -> dict[str, dict]:
    paths = [f["path"] for f in data["write_files"]]
    assert len(paths) == len(set(paths)), "a file written twice"
    return {f["path"]: f for f in data["write_files"]}


def manifest(written: dict[str, dict]) -> list[list[str]]:
    entry = written.get("/etc/skymesh/tls/secrets")
    if entry is None:
        return []
    assert entry["permissions"] == "0600"
    return [line.split() for line in entry["content"].splitlines() if line.strip()]


def provided(written: dict[str, dict]) -> set[str]:
    """Every file the node will have: written by cloud-init or fetched by the manifest."""
    out = set(written)
    for fields in manifest(written):
        out.update(fields[3:])
    return out


def schema_validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema checks cloud-init's "
                                     "schema")
    for path in SCHEMA_PATHS:
        if path and Path(path).is_file():
            schema = json.loads(Path(path).read_text())
            return jsonschema.Draft4Validator(schema)
    pytest.skip("no cloud-init schema here (Debian's cloud-init package has it: "
                "schema-cloud-config-v1.json; or set CLOUD_INIT_SCHEMA)")


@pytest.fixture(scope="module", params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def root(modules, root_vars, mode) -> hcl.Evaluator:
    return root_evaluator(modules, root_vars, tls_key_mode=mode)


@pytest.fixture(scope="module", params=["london", "beijing"])
def region(request, modules, root) -> hcl.Evaluator:
    ev = region_evaluator(modules, root, request.param)
    ev.region = request.param
    return ev


@pytest.fixture(scope="module")
def controllers(modules, root) -> hcl.Evaluator:
    return controllers_evaluator(modules, root)


# -- relays ----------------------------------------------------------------------------------------


def test_relay_cloud_config(region: hcl.Evaluator, mode: str) -> None:
    user_data = region.local("user_data")
    assert len(user_data) == {"london": 3, "beijing": 2}[region.region]
    for text in user_data:
        data = cloud_config(text)
        assert "python3-venv" in data["packages"]
        assert ("awscli" in data["packages"]) == (mode == "secretsmanager")
        (skymesh,) = [u for u in data["users"] if isinstance(u, dict)]
        assert skymesh == {"name": "skymesh", "system": True, "shell": "/usr/sbin/nologin",
                           "no_create_home": True, "lock_passwd": True}
        assert "default" in data["users"]
        written = files(data)
        # the relay's user must exist first: its files wait for it
        for path, entry in written.items():
            if "skymesh" in entry.get("owner", ""):
                assert entry.get("defer") is True, path
        assert ["/opt/skymesh/bin/pip", "install", "--quiet", "--no-input", "skymesh"] in \
            data["runcmd"]
        assert data["runcmd"][-1] == ["systemctl", "enable", "--now", "--no-block",
                                      "skymesh-relay.service"]


def test_relay_configuration_loads_and_names_what_the_node_has(region: hcl.Evaluator,
                                                               mode: str) -> None:
    rid = region.region
    for i, text in enumerate(region.local("user_data")):
        written = files(load_yaml(text))
        entry = written["/etc/skymesh/relay.yaml"]
        assert (entry["owner"], entry["permissions"]) == ("root:skymesh", "0640")
        try:
            values = RELAY_CONFIG.loads(entry["content"], origin="relay.yaml",
                                        base=Path("/etc/skymesh"))
        except ConfigError as e:
            pytest.fail(f"the relay refuses its configuration:\n{e}")
        assert values["region"] == rid and values["node"] == f"n{i + 1}"
        assert values["controller"] == ",".join(
            f"{c}.skymesh.internal:7400" for c in sorted(CONTROLLER_IPS))
        assert values["bind"] == "0.0.0.0:7500"
        assert values["advertise"] == relay_ip(rid, i)  # its Elastic IP
        assert values["edge_port"] == 443
        assert "insecure" not in values
        needed = {str(values[k]) for k in ("ca", "cert", "key", "tls_cert", "tls_key")}
        assert needed == {f"/etc/skymesh/tls/{f}" for f in
                          ("bundle.pem", "relay.pem", "relay.key", "edge.pem", "edge.key")}
        assert needed <= provided(written), needed - provided(written)

        # the names it reaches the controllers by, at the controllers' addresses
        hosts = written["/etc/cloud/templates/hosts.debian.tmpl"]
        assert hosts["append"] is True
        assert hosts["content"].splitlines() == [
            f"{ip} {c}.skymesh.internal" for c, ip in sorted(CONTROLLER_IPS.items())]
        assert load_yaml(text)["manage_etc_hosts"] is True

        if mode == "inline":
            assert manifest(written) == []
            for key in ("/etc/skymesh/tls/relay.key", "/etc/skymesh/tls/edge.key"):
                assert (written[key]["owner"], written[key]["permissions"]) == \
                    ("root:skymesh", "0640")
            assert f"relay-{rid}-n{i + 1}\n" in written["/etc/skymesh/tls/relay.key"]["content"]
            assert f"relay-{rid}-n{i + 1}\n" in written["/etc/skymesh/tls/relay.pem"]["content"]
        else:
            assert not any(p.endswith(".key") for p in written)
            own = {"relay": f"relay-{rid}-n{i + 1}", "edge": f"edge-{rid}", "bundle": "bundle"}
            lines = manifest(written)
            assert {line[0].rsplit("/", 1)[1].removesuffix("-AbCdEf") for line in lines} == \
                set(own.values())
            for line in lines:
                assert line[0].startswith("arn:aws-cn:" if rid == "beijing" else "arn:aws:")
                assert line[1] in ("0644", "0640") and line[2] in ("skymesh", "root")


def test_cloud_config_passes_cloud_inits_schema(region: hcl.Evaluator,
                                               controllers: hcl.Evaluator) -> None:
    """cloud-init's own schema (of Debian 12's cloud-init, as the AMI runs it) knows every
    key and value used: write_files' defer and append, users' system and no_create_home."""
    validator = schema_validator()
    for text in [*region.local("user_data"), *controllers.local("user_data").values()]:
        assert [e.message for e in validator.iter_errors(load_yaml(text))] == []


def test_each_relay_node_may_read_its_own_secrets_only(region: hcl.Evaluator,
                                                       mode: str) -> None:
    rid = region.region
    block = region.module.resources()["aws_iam_role_policy.node_secrets"]
    count = region.eval(block.attributes["count"], {})
    if mode == "inline":
        assert count == 0
        assert region.local("new_secrets") == ()
        return
    assert count == len(region.local("nodes"))
    arns = {name: s["arn"] for name, s in region.resources[
        "aws_secretsmanager_secret.tls"].items()}
    assert set(arns) == {f"relay-{rid}-n{i}" for i in range(1, count + 1)} | \
        {f"edge-{rid}", "bundle"}
    for i in range(count):
        inst = region.with_instance(count_index=i)
        policy = json.loads(inst.attribute(block, "policy"))
        (statement,) = policy["Statement"]
        assert statement["Action"] == ["secretsmanager:GetSecretValue"]
        assert set(statement["Resource"]) == {arns[f"relay-{rid}-n{i + 1}"],
                                              arns[f"edge-{rid}"], arns["bundle"]}
    # a secret holds the certificate, then its key
    version = region.module.resources()["aws_secretsmanager_secret_version.tls"]
    inst = region.with_instance(each=(f"relay-{rid}-n2", arns[f"relay-{rid}-n2"]))
    text = inst.attribute(version, "secret_string")
    assert text.index("BEGIN CERTIFICATE") < text.index("BEGIN PRIVATE KEY")
    assert text.count(f"relay-{rid}-n2\n") == 2
    inst = region.with_instance(each=("bundle", arns["bundle"]))
    assert "PRIVATE KEY" not in inst.attribute(version, "secret_string")


def test_units_installed_are_the_projects_own(region: hcl.Evaluator,
                                              controllers: hcl.Evaluator) -> None:
    texts = [*region.local("user_data"), *controllers.local("user_data").values()]
    for text in texts:
        written = files(load_yaml(text))
        units = {p.removeprefix("/etc/systemd/system/"): e["content"]
                 for p, e in written.items() if p.startswith("/etc/systemd/system/")}
        assert units, "no units"
        for name, content in units.items():
            assert name in UNITS
            assert content == (DEPLOY / "systemd" / name).read_text(), name
        scripts = {p.removeprefix("/usr/local/sbin/"): e for p, e in written.items()
                   if p.startswith("/usr/local/sbin/")}
        assert "skymesh-tls-fetch" in scripts
        for name, entry in scripts.items():
            assert entry["content"] == (DEPLOY / name).read_text(), name
            assert entry["permissions"] == "0755"
        # what runcmd enables is there
        for command in load_yaml(text)["runcmd"]:
            if command[:2] == ["systemctl", "enable"]:
                assert command[-1] in units or command[-1] == "etcd.service"


# -- controllers ---------------------------------------------------------------------------------


def controller_config(ev: hcl.Evaluator, replica: str) -> dict[str, Any]:
    """A replica's configuration as the controller loads it: the S3 object
    skymesh-controller-sync puts at /etc/skymesh/controller.yaml."""
    block = ev.module.resources()["aws_s3_object.config"]
    inst = ev.with_instance(each=(replica, replica))
    assert inst.attribute(block, "key") == f"replicas/{replica}/controller.yaml"
    try:
        return CONTROLLER_CONFIG.loads(inst.attribute(block, "content"),
                                       origin="controller.yaml", base=Path("/etc/skymesh"))
    except ConfigError as e:
        pytest.fail(f"the controller refuses its configuration:\n{e}")


def test_controller_configuration(controllers: hcl.Evaluator, root: hcl.Evaluator) -> None:
    for c in ("c1", "c2", "c3"):
        values = controller_config(controllers, c)
        assert values["replica"] == c
        assert values["listen"] == "0.0.0.0:7400"
        assert values["advertise"] == f"{c}.skymesh.internal:7400"
        assert values["resolve_listen"] == "0.0.0.0:7443"
        assert values["store"] == "etcd://" + ",".join(
            f"etcd-c{n}.skymesh.internal:2379" for n in (1, 2, 3))
        # it serves the regions provisioned, of a catalogue of them all
        assert values["only"] == ",".join(sorted(root.local("relays")))
        assert str(values["regions"]) == "/etc/skymesh/regions"
        assert str(values["apps"]) == "/etc/skymesh/apps.yaml"
        assert "fabric_keys" not in values  # none given: the controllers make their own
        assert {str(values[k]) for k in ("ca", "cert", "key")} == {
            "/etc/skymesh/tls/bundle.pem", "/etc/skymesh/tls/controller.pem",
            "/etc/skymesh/tls/controller.key"}
        assert "insecure" not in values


def test_controller_data_in_s3(controllers: hcl.Evaluator, root: hcl.Evaluator) -> None:
    """The catalogue and apps file, kept where skymesh-controller-sync fetches them."""
    resources = controllers.module.resources()
    block = resources["aws_s3_object.catalogue"]
    objects = {}
    for name, content in controllers.attribute(block, "for_each").items():
        inst = controllers.with_instance(each=(name, content))
        objects[inst.attribute(block, "key")] = inst.attribute(block, "content")
    assert objects == {f"regions/{p.name}": p.read_text() for p in REGIONS.glob("*.yaml")}
    assert controllers.attribute(resources["aws_s3_object.apps"], "key") == "apps.yaml"
    assert controllers.attribute(resources["aws_s3_object.apps"], "content") == \
        Path(root.variables["apps_file"]).read_text()
    # every replica may read them, and nothing else of S3
    block = resources["aws_iam_role_policy.node_data"]
    policy = json.loads(controllers.with_instance(each=("c1", "c1")).attribute(block, "policy"))
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"]] == [
        (["s3:ListBucket"], [f"arn:aws:s3:::{DATA_BUCKET}"]),
        (["s3:GetObject"], [f"arn:aws:s3:::{DATA_BUCKET}/*"])]
    public = controllers.module.resources()["aws_s3_bucket_public_access_block.data"]
    assert all(controllers.attribute(public, k) is True for k in public.attributes
               if k != "bucket")


def test_controller_cloud_config(controllers: hcl.Evaluator, mode: str) -> None:
    user_data = controllers.local("user_data")
    assert sorted(user_data) == ["c1", "c2", "c3"]
    private = {}
    for c, text in sorted(user_data.items()):
        data = cloud_config(text)
        assert {"python3-venv", "awscli", "etcd-server"} <= set(data["packages"])
        written = files(data)
        # what the controller reads comes by S3, not here: a change replaces no instance
        assert not any(p.startswith("/etc/skymesh/regions") or p in (
            "/etc/skymesh/controller.yaml", "/etc/skymesh/apps.yaml") for p in written)
        env = dict(line.split("=", 1) for line in
                   written["/etc/skymesh/controller-sync.env"]["content"].splitlines())
        assert env == {"SKYMESH_DATA": f"s3://{DATA_BUCKET}", "SKYMESH_REPLICA": c,
                       "AWS_DEFAULT_REGION": "us-east-1"}
        for script in ("skymesh-tls-fetch", "skymesh-controller-sync"):
            entry = written[f"/usr/local/sbin/{script}"]
            assert entry["content"] == (DEPLOY / script).read_text()
            assert entry["permissions"] == "0755"
        assert {"/etc/skymesh/tls/bundle.pem", "/etc/skymesh/tls/controller.pem",
                "/etc/skymesh/tls/controller.key"} <= provided(written)
        assert ["systemctl", "enable", "--now", "skymesh-controller-sync.timer"] in \
            data["runcmd"]
        assert data["runcmd"][-1] == ["systemctl", "enable", "--now", "--no-block",
                                      "skymesh-controller.service"]

        # etcd: a member of a cluster of all three, mutual TLS with the mesh's CA
        etcd = dict(line.split("=", 1) for line in
                    written["/etc/default/etcd"]["content"].splitlines()
                    if line and not line.startswith("#"))
        assert etcd["ETCD_NAME"] == c
        assert etcd["ETCD_INITIAL_CLUSTER"] == ",".join(
            f"c{n}=https://etcd-c{n}.skymesh.internal:2380" for n in (1, 2, 3))
        assert etcd["ETCD_ADVERTISE_CLIENT_URLS"] == f"https://etcd-{c}.skymesh.internal:2379"
        for flag in ("ETCD_CLIENT_CERT_AUTH", "ETCD_PEER_CLIENT_CERT_AUTH"):
            assert etcd[flag] == "true"
        tls = {etcd[k] for k in ("ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_TRUSTED_CA_FILE",
                                  "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE",
                                  "ETCD_PEER_TRUSTED_CA_FILE")}
        assert tls <= provided(written)
        # the drop-in waits for the key etcd is configured with
        assert f"ConditionPathExists={etcd['ETCD_KEY_FILE']}\n" in \
            written["/etc/systemd/system/etcd.service.d/skymesh.conf"]["content"]
        etcd_key = [line for line in manifest(written) if "/etc/skymesh/tls/etcd.key" in line]
        if mode == "secretsmanager":
            assert etcd_key and etcd_key[0][2] == "etcd"  # etcd reads its own key
            assert etcd_key[0][0].endswith(f"controllers/etcd-{c}-AbCdEf")
        else:
            assert written["/etc/skymesh/tls/etcd.key"]["owner"] == "root:etcd"
        # the private addresses etcd listens on and the names map to
        private[c] = etcd["ETCD_LISTEN_PEER_URLS"].removeprefix("https://").split(":")[0]
        hosts = written["/etc/cloud/templates/hosts.debian.tmpl"]["content"].splitlines()
        assert f"{private[c]} {c}.skymesh.internal etcd-{c}.skymesh.internal" in hosts
        assert len(hosts) == 3
    assert len(set(private.values())) == 3
    assert all(ip.startswith("10.90.") for ip in private.values())


def test_controllers_on_an_existing_etcd(modules, root_vars) -> None:
    root = root_evaluator(modules, root_vars, etcd_endpoints=["etcd.example.net:2379"],
                          fabric_keys_file=root_vars["apps_file"])
    ev = controllers_evaluator(modules, root)
    for c, text in ev.local("user_data").items():
        data = cloud_config(text)
        assert "etcd-server" not in data["packages"]
        written = files(data)
        assert "/etc/default/etcd" not in written
        assert "/etc/systemd/system/etcd.service.d/skymesh.conf" not in written
        values = controller_config(ev, c)
        assert values["store"] == "etcd://etcd.example.net:2379"
        # fabric keys given: a secret of its own, fetched where the configuration says
        assert str(values["fabric_keys"]) == "/etc/skymesh/tls/fabric.keys"
        (line,) = [f for f in manifest(written) if f[3] == "/etc/skymesh/tls/fabric.keys"]
        assert line[1:3] == ["0640", "skymesh"] and len(line) == 4
    # and no etcd ports open between the replicas
    rule = ev.module.resources()["aws_vpc_security_group_ingress_rule.etcd"]
    assert ev.attribute(rule, "count") == 0


def test_each_controller_may_read_its_own_secrets_only(controllers: hcl.Evaluator,
                                                       mode: str) -> None:
    block = controllers.module.resources()["aws_iam_role_policy.node_secrets"]
    replicas = controllers.eval(block.attributes["for_each"], {})
    if mode == "inline":
        assert replicas == ()
        return
    arns = {n: s["arn"] for n, s in controllers.resources[
        "aws_secretsmanager_secret.this"].items()}
    for c in ("c1", "c2", "c3"):
        policy = json.loads(controllers.with_instance(each=(c, c)).attribute(block, "policy"))
        (statement,) = policy["Statement"]
        assert set(statement["Resource"]) == {arns[f"controller-{c}"], arns[f"etcd-{c}"],
                                              arns["bundle"]}


# -- the templates and the renderer --------------------------------------------------------------


def templatefile_calls(module: hcl.Module) -> list[tuple[str, set[str]]]:
    """Each templatefile() call's template file and the variable names it passes."""
    calls = []
    for _, _, expr in hcl.module_expressions(module):
        for node in expr.iter_subtrees():
            if node.data != "function_call" or str(node.children[0].children[0]) != \
                    "templatefile":
                continue
            args = [c for c in node.children if hasattr(c, "data") and c.data == "arguments"]
            path_expr, vars_expr = [c for c in args[0].children if hasattr(c, "data")
                                    and c.data != "new_line_or_comment"]
            path = hcl._tokens_text(path_expr).strip('"').replace("${path.module}/", "")
            obj = vars_expr
            while obj.data == "expr_term":
                (obj,) = [c for c in obj.children if hasattr(c, "data")]
            assert obj.data == "object", "templatefile's variables: write them out as {...}"
            names = {hcl._tokens_text(e.children[0]).strip() for e in obj.children
                     if hasattr(e, "data") and e.data == "object_elem"}
            calls.append((path, names))
    return calls


@pytest.mark.parametrize("name", ["region", "controllers"])
def test_templates_get_exactly_the_variables_they_use(modules, name: str) -> None:
    calls = templatefile_calls(modules[name])
    assert {path for path, _ in calls} == {p.name for p in MODULES[name].glob("*.tftpl")}
    for path, passed in calls:
        text = (MODULES[name] / path).read_text()
        used = hcl.template_names(text, path)
        assert used == passed, (path, {"passed, not used": passed - used,
                                       "used, not passed": used - passed})


def test_renderer() -> None:
    render = hcl.render_template
    assert render("a ${x} b", {"x": 1.5}) == "a 1.5 b"
    assert render("%{ for k, v in m }${k}=${v};%{ endfor }", {"m": {"b": 1, "a": 2}}) == \
        "a=2;b=1;"
    assert render("%{ if x }y%{ else }n%{ endif }", {"x": False}) == "n"
    # a strip marker strips the whitespace of the one line beside it
    assert render("a\n  b %{ if x ~}\n yes \n%{~ endif }\n", {"x": True}) == "a\n  b  yes\n"
    assert render("x\n%{ for i in xs ~}\n- ${i}\n%{ endfor ~}\nz\n", {"xs": [1, 2]}) == \
        "x\n- 1\n- 2\nz\n"
    assert render('$${lit} %%{lit} ${"}"}', {}) == "${lit} %{lit} }"
    assert render('${join(",", [for s in xs : upper(s)])}', {"xs": ["a"]}) == "A"
    for bad, error in [("${nope}", hcl.HclError), ("${x}", hcl.EvalError),
                       ("%{ if true }", hcl.HclError), ("%{ endif }", hcl.HclError),
                       ("%{ while x }%{ endwhile }", hcl.Unsupported),
                       ("${formatdate(x)}", hcl.Unsupported)]:
        with pytest.raises(error):
            render(bad, {"x": None})


@pytest.mark.skipif(terraform_binary() is None,
                    reason="no terraform binary here (it is not installable from this "
                    "project's package sources); the renderer stands in for it")
def test_terraform_renders_the_same(tmp_path: Path, modules, root_vars) -> None:
    root = root_evaluator(modules, root_vars, tls_key_mode="inline")
    controllers = controllers_evaluator(modules, root)
    cases = [(MODULES["region"] / "cloud-init.yaml.tftpl", "user_data",
              region_evaluator(modules, root, "beijing")),
             (MODULES["controllers"] / "cloud-init.yaml.tftpl", "user_data", controllers),
             (MODULES["controllers"] / "controller.yaml.tftpl", "config", controllers)]
    tricky = tmp_path / "tricky.tftpl"
    tricky.write_text("a\n  b %{ if x ~}\n yes \n%{~ endif }\n%{ for k, v in m ~}\n"
                      "  ${k}: ${v}   \n%{~ endfor }$${x} %%{y}\n${indent(2, s)}\n")
    for template, variables in [
        *[(path, captured_variables(ev, name)) for path, name, ev in cases],
        (tricky, {"x": True, "m": {"b": 1, "a": "q"}, "s": "l1\nl2\n"}),
    ]:
        shutil.copy(template, tmp_path / "t.tftpl")
        (tmp_path / "vars.json").write_text(json.dumps(variables))
        theirs = terraform_console(tmp_path, 'templatefile("t.tftpl", '
                                   'jsondecode(file("vars.json")))')
        assert theirs == hcl.render_template(template.read_text(), variables)


def captured_variables(ev: hcl.Evaluator, local: str) -> dict[str, Any]:
    """The variables the module passes the templatefile() call of local.<local>, captured as
    it renders."""
    seen: list[dict] = []
    original = hcl.FUNCTIONS["templatefile"]

    def capture(inner, path, variables):
        seen.append(variables)
        return original(inner, path, variables)

    hcl.FUNCTIONS["templatefile"] = capture
    try:
        fresh = ev.with_instance()
        fresh._local_values = {}
        fresh.local(local)
    finally:
        hcl.FUNCTIONS["templatefile"] = original
    assert seen
    return json.loads(hcl._json_text(seen[0]))
