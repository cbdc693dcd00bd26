"""The systemd units of deploy/systemd/ (the ones the terraform modules' cloud-init installs:
test_cloud_init.py checks they are the same files): `systemd-analyze verify` on each, where
Debian's systemd is installed, with only the paths of programs that do not exist here
pointed at a stand-in; their hardening, by its settings and by `systemd-analyze security`;
and the TLS fetch script they run, against a stand-in `aws` command."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from deploykit import DEPLOY, MODULES

SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
# programs the units run that exist on a node but not here
NODE_PROGRAMS = ["/opt/skymesh/bin/skymesh", "/usr/local/sbin/skymesh-tls-fetch",
                 "/usr/local/sbin/skymesh-controller-sync"]

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian's systemd package has it)")


def settings(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: each key's values in order (keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        assert section is not None, f"a setting outside a section: {line}"
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None and len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def stand_in_copy(directory: Path, tmp: Path) -> Path:
    """The units of `directory` in tmp/units, the programs a node has and this machine
    has not replaced by a stand-in that exits 0; nothing else changed."""
    stand_in = tmp / "stand-in"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    out = tmp / "units"
    shutil.copytree(directory, out)
    for unit in out.rglob("*"):
        if unit.is_file():
            text = unit.read_text()
            for program in NODE_PROGRAMS:
                text = re.sub(rf"(?<==){re.escape(program)}(?=\s)", str(stand_in), text)
            unit.write_text(text)
            original = (directory / unit.relative_to(out)).read_text().splitlines()
            changed = [(a, b) for a, b in zip(original, text.splitlines(), strict=True)
                       if a != b]
            assert all(a.startswith(("ExecStart=", "ExecStartPre=")) for a, _ in changed)
    return out


def verify(units: Path, *names: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(["systemd-analyze", "verify", *[str(units / n) for n in names]],
                          capture_output=True, text=True, env=env, timeout=60)


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies(name: str, tmp_path: Path) -> None:
    units = stand_in_copy(SYSTEMD, tmp_path)
    proc = verify(units, name)
    # a warning (an unknown key, a setting in the wrong section) fails too
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", \
        proc.stdout + proc.stderr


@needs_systemd_analyze
def test_verify_catches_a_mistake(tmp_path: Path) -> None:
    """What the checks rely on: a misplaced setting is reported."""
    units = stand_in_copy(SYSTEMD, tmp_path)
    relay = units / "skymesh-relay.service"
    text = relay.read_text().replace("StartLimitIntervalSec=0\n", "")
    relay.write_text(text.replace("Restart=on-failure\n",
                                  "Restart=on-failure\nStartLimitIntervalSec=0\n"))
    proc = verify(units, "skymesh-relay.service")
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in proc.stderr


@needs_systemd_analyze
def test_etcd_drop_in_verifies(tmp_path: Path) -> None:
    """The drop-in over Debian's etcd.service (etcd-server), or a stand-in for it."""
    units = stand_in_copy(SYSTEMD, tmp_path)
    debian = Path("/lib/systemd/system/etcd.service")
    if debian.is_file():
        shutil.copy(debian, units / "etcd.service")
    else:
        (units / "etcd.service").write_text("[Service]\nType=notify\nExecStart=/bin/true\n")
    proc = verify(units, "etcd.service")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    broken = units / "etcd.service.d" / "skymesh.conf"
    broken.write_text(broken.read_text().replace("[Service]", "[Service]\nRestartt=always"))
    assert "Restartt" in verify(units, "etcd.service").stderr


@needs_systemd_analyze
@pytest.mark.parametrize("name", [u for u in UNITS if u.endswith(".service")])
def test_services_are_hardened(name: str, tmp_path: Path) -> None:
    help_text = subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True,
                               text=True).stdout
    if "--offline" not in help_text:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    units = stand_in_copy(SYSTEMD, tmp_path)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=30",
                           "--no-pager", str(units / name)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    # exposure at most 3.0 of 10 ("OK"); an unhardened service scores 9.6
    assert proc.returncode == 0, proc.stdout[-600:] + proc.stderr


@pytest.mark.parametrize("role, capability", [("relay", "CAP_NET_BIND_SERVICE"),
                                              ("controller", "")])
def test_skymesh_units(role: str, capability: str) -> None:
    unit = settings((SYSTEMD / f"skymesh-{role}.service").read_text())
    config = f"/etc/skymesh/{role}.yaml"
    service = unit["Service"]
    assert one(unit, "Service", "ExecStartPre") == \
        f"/opt/skymesh/bin/skymesh {role} --config {config} --check-config"
    assert one(unit, "Service", "ExecStart") == f"/opt/skymesh/bin/skymesh {role} --config {config}"
    assert (one(unit, "Service", "User"), one(unit, "Service", "Group")) == ("skymesh", "skymesh")
    assert one(unit, "Service", "Restart") == "on-failure"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes")]:
        assert service[key] == [value], key
    # the capabilities it needs, and no other
    assert one(unit, "Service", "CapabilityBoundingSet") == capability
    assert one(unit, "Service", "AmbientCapabilities") == capability
    wants = " ".join(unit["Unit"]["Wants"]).split()
    after = " ".join(unit["Unit"]["After"]).split()
    fetchers = ["skymesh-tls-refresh.service"]
    if role == "controller":
        fetchers.append("skymesh-controller-sync.service")
    assert set(fetchers) <= set(wants) and set(fetchers) <= set(after)
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    # the configuration file is the one cloud-init writes (relays) or the sync places
    if role == "relay":
        text = (MODULES["region"] / "cloud-init.yaml.tftpl").read_text()
        assert f"- path: {config}\n" in text
    else:
        text = (DEPLOY / "skymesh-controller-sync").read_text()
        assert 'etc=${SKYMESH_ETC:-/etc/skymesh}' in text
        assert 'place "$stage/controller.yaml" "$etc/controller.yaml"' in text


def test_controller_sync_units() -> None:
    service = settings((SYSTEMD / "skymesh-controller-sync.service").read_text())
    env = one(service, "Service", "EnvironmentFile")
    assert one(service, "Unit", "ConditionPathExists") == env
    assert one(service, "Service", "ExecStart") == "/usr/local/sbin/skymesh-controller-sync"
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ReadWritePaths") == "/etc/skymesh"
    timer = settings((SYSTEMD / "skymesh-controller-sync.timer").read_text())
    assert one(timer, "Timer", "OnCalendar") == "*:0/5"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    text = (MODULES["controllers"] / "cloud-init.yaml.tftpl").read_text()
    assert f"- path: {env}\n" in text
    assert "- path: /usr/local/sbin/${name}\n" in text


def test_tls_refresh_units() -> None:
    service = settings((SYSTEMD / "skymesh-tls-refresh.service").read_text())
    manifest = one(service, "Unit", "ConditionPathExists")
    assert one(service, "Service", "ExecStart") == \
        f"/usr/local/sbin/skymesh-tls-fetch {manifest}"
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ReadWritePaths") == str(Path(manifest).parent)
    assert one(service, "Service", "CapabilityBoundingSet") == "CAP_CHOWN"
    assert one(service, "Service", "NoNewPrivileges") == "yes"
    timer = settings((SYSTEMD / "skymesh-tls-refresh.timer").read_text())
    assert one(timer, "Timer", "OnCalendar") == "hourly"
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    # cloud-init writes the script and the manifest where the unit looks for them
    for module in ("region", "controllers"):
        text = (MODULES[module] / "cloud-init.yaml.tftpl").read_text()
        assert f"- path: {manifest}\n" in text


# -- the fetch script ----------------------------------------------------------------------------

FETCH = DEPLOY / "skymesh-tls-fetch"
SYNC = DEPLOY / "skymesh-controller-sync"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the script gives files to root "
                                "(install -o root), which only root may do")


@pytest.mark.parametrize("script", [FETCH, SYNC], ids=lambda p: p.name)
def test_scripts_are_posix_sh(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh\n")
    assert script.stat().st_mode & stat.S_IXUSR
    proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout


@needs_root
def test_fetch_script_places_secrets(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    cert = "-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n"
    (secrets / "relay").write_text(cert + key)
    (secrets / "bundle").write_text(cert + cert)
    (secrets / "nokey").write_text(cert)
    # the AWS CLI: prints the secret named by --secret-id, as --output text does
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(f"""#!/bin/sh
echo "$@" >>{tmp_path}/calls
while [ $# -gt 0 ]; do
    case $1 in --secret-id) id=$2 ;; esac
    shift
done
name=${{id##*:secret:}}
cat "{secrets}/$name" || exit 254
echo
""")
    aws.chmod(0o755)
    tls = tmp_path / "tls"
    tls.mkdir()
    arn = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:"
    (tls / "secrets").write_text(
        f"# ARN MODE GROUP FILE [KEYFILE]\n"
        f"{arn}relay 0644 root {tls}/relay.pem {tls}/relay.key\n"
        f"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:bundle 0644 root "
        f"{tls}/bundle.pem\n")

    def run(manifest: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(FETCH), str(manifest)], capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                              timeout=60)

    proc = run(tls / "secrets")
    assert proc.returncode == 0, proc.stderr
    assert (tls / "relay.pem").read_text() == cert
    assert (tls / "relay.key").read_text() == key
    assert (tls / "bundle.pem").read_text() == cert + cert + "\n"
    assert stat.S_IMODE((tls / "relay.key").stat().st_mode) == 0o640
    assert stat.S_IMODE((tls / "relay.pem").stat().st_mode) == 0o644
    assert (tls / "relay.key").stat().st_uid == 0
    assert not list(tls.glob("*.new"))
    # each secret read in the region its ARN names
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split("--region ")[1].split()[0] for c in calls] == ["eu-west-2", "cn-north-1"]
    assert proc.stdout.count("updated") == 3

    # again: nothing changed, nothing replaced
    before = (tls / "relay.key").stat().st_ino
    proc = run(tls / "secrets")
    assert proc.returncode == 0 and "updated" not in proc.stdout
    assert (tls / "relay.key").stat().st_ino == before

    # a rotated certificate: replaced (a new file, atomically)
    (secrets / "relay").write_text(cert.replace("Y2VydA==", "bmV3") + key)
    proc = run(tls / "secrets")
    assert proc.stdout.strip() == f"skymesh-tls-fetch: updated {tls}/relay.pem"
    assert "bmV3" in (tls / "relay.pem").read_text()

    # what it cannot place it says, goes on with the rest, and exits 1
    bad = tmp_path / "bad"
    bad.write_text(f"{arn}missing 0644 root {tls}/x.pem\n"
                   f"{arn}nokey 0644 root {tls}/y.pem {tls}/y.key\n"
                   f"s3://bucket/key 0644 root {tls}/z.pem\n"
                   f"{arn}bundle 0644 root {tls}/bundle2.pem\n")
    proc = run(bad)
    assert proc.returncode == 1
    assert f"cannot read {arn}missing" in proc.stderr
    assert "nokey: expected PEM certificates and a private key" in proc.stderr
    assert "not a Secrets Manager ARN: s3://bucket/key" in proc.stderr
    assert (tls / "bundle2.pem").is_file()
    assert not (tls / "y.pem").exists() and not (tls / "y.key").exists()


@needs_root
def test_sync_script_follows_s3_and_restarts_the_controller(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    (bucket / "regions").mkdir(parents=True)
    (bucket / "replicas" / "c2").mkdir(parents=True)
    for rid in ("london", "tokyo"):
        (bucket / "regions" / f"{rid}.yaml").write_text(f"id: {rid}\n")
    (bucket / "apps.yaml").write_text("shop: key1\n")
    (bucket / "replicas" / "c2" / "controller.yaml").write_text("replica: c2\n")
    # the AWS CLI's s3 sync --delete and s3 cp, on a directory standing in for the bucket;
    # systemctl, logged
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(f"""#!/bin/sh
echo "$@" >>{tmp_path}/calls
[ "$1" = s3 ] || exit 2
op=$2; shift 2
while [ "${{1#--}}" != "$1" ]; do shift; done
src={bucket}/${{1#s3://test-bucket/}}
case $op in
    sync) mkdir -p "$2" && rm -rf "$2"/* && cp -r "$src". "$2" ;;
    cp) cp "$src" "$2" ;;
esac
""")
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >>{tmp_path}/systemctl\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    etc = tmp_path / "etc"
    (etc / "regions").mkdir(parents=True)
    (etc / "regions" / "gone.yaml").write_text("id: gone\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "SKYMESH_DATA": "s3://test-bucket", "SKYMESH_REPLICA": "c2",
           "SKYMESH_ETC": str(etc), "SKYMESH_GROUP": "root",
           "STATE_DIRECTORY": str(tmp_path / "state")}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([str(SYNC)], capture_output=True, text=True, env=env,
                              timeout=60)

    def restarts() -> int:
        log = tmp_path / "systemctl"
        return log.read_text().count("try-restart --no-block skymesh-controller.service") \
            if log.exists() else 0

    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (etc / "regions").iterdir()) == ["london.yaml", "tokyo.yaml"]
    assert (etc / "controller.yaml").read_text() == "replica: c2\n"
    assert (etc / "apps.yaml").read_text() == "shop: key1\n"
    assert stat.S_IMODE((etc / "apps.yaml").stat().st_mode) == 0o640
    assert restarts() == 1
    # nothing new: nothing touched, no restart
    assert run().stdout == "" and restarts() == 1
    # a region added: placed, and the controller restarted to serve it
    (bucket / "regions" / "lisbon.yaml").write_text("id: lisbon\n")
    proc = run()
    assert proc.stdout.strip() == f"skymesh-controller-sync: updated {etc}/regions/lisbon.yaml"
    assert restarts() == 2
    # S3 unreadable: nothing changed, status 1
    (bucket / "apps.yaml").unlink()
    proc = run()
    assert proc.returncode == 1 and "cannot read s3://test-bucket" in proc.stderr
    assert (etc / "apps.yaml").is_file() and restarts() == 2
