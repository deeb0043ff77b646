"""The AWS runbooks (playbooks/heal_aws_instance.yml and the aws_* roles) run for real with
ansible-playbook and the amazon.aws modules against moto in server mode (`moto_server` on
127.0.0.1, dummy credentials).

Every request goes through a small recording proxy in front of moto, so a test can say which
API operations a run called: check mode must call no write operation, a second run none.

What moto cannot do, and is therefore not tested here:
- Auto Scaling instance refresh: moto 5 does not implement StartInstanceRefresh or
  DescribeInstanceRefreshes (it answers 500). The tests cover the instance_refresh runbook up
  to its decision (compliance, group lookup, a healthy group left alone); the guard against
  a refresh in progress, the start, its check mode and the wait for a successful refresh are
  not exercised.
- Spot interruptions: moto cannot reclaim spot capacity, so a spot instance is terminated
  through the API and the inventory lists that user-initiated shutdown as an interruption
  code (`aws_spot_fallback_interruption_codes`).
- EC2 status checks are always `ok` in moto and CloudWatch never evaluates alarms: the tests
  set alarm states with SetAlarmState. The instance's launch time does not change on a
  stop/start in moto, so the guard that ignores an alarm older than the last start is not
  exercised.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from support import REPO, ansible_bin

boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/heal_aws_instance.yml"
REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
READ_PREFIXES = ("Describe", "List", "Get")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _operation(handler: BaseHTTPRequestHandler, body: bytes) -> str:
    """The API operation of one AWS request, whatever protocol botocore chose for it."""
    target = handler.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    path = urllib.parse.urlsplit(handler.path).path
    if "/operation/" in path:  # Smithy RPC v2 (CBOR)
        return path.rsplit("/", 1)[-1]
    query = urllib.parse.parse_qs(body.decode("latin-1")) if body else {}
    query |= urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query)
    return query.get("Action", ["?"])[0]


class RecordingProxy:
    """Forwards every request to moto and records its operation name."""

    def __init__(self, upstream: int) -> None:
        self.calls: list[str] = []
        self.bodies: list[bytes] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.calls.append(_operation(self, body))
                proxy.bodies.append(self.path.encode() + body)
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def writes(self) -> list[str]:
        return [c for c in self.calls if not c.startswith(READ_PREFIXES)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    server = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(server).exists():
        pytest.skip("moto[server] is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # bounded: up to ~20 s for moto to start
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.2)
        else:
            pytest.fail("moto_server did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws(moto_port: int) -> Iterator[RecordingProxy]:
    """A clean moto behind a fresh recording proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=10)
    conn.request("POST", "/moto-api/reset")
    assert conn.getresponse().status == 200
    conn.close()
    proxy = RecordingProxy(moto_port)
    yield proxy
    proxy.close()


def client(proxy: RecordingProxy, service: str):
    # Straight to moto would also do; through the proxy the setup is recorded too, so
    # tests clear `calls` after setting up.
    return boto3.client(
        service,
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def launch(proxy: RecordingProxy, *, spot: bool = False, name: str = "web01") -> str:
    ec2 = client(proxy, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    reply = ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": name}, {"Key": "team", "Value": "sre"}],
            }
        ],
        **extra,
    )
    return reply["Instances"][0]["InstanceId"]


def run(
    tmp_path: Path,
    proxy: RecordingProxy,
    action: str,
    hosts: dict[str, dict],
    *,
    check: bool = False,
    extra: dict | None = None,
) -> subprocess.CompletedProcess:
    """One ansible-playbook run over these inventory hosts (several per run: each run costs)."""
    inventory = {}
    for name, host_vars in hosts.items():
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "selfheal_managed": True,
            **host_vars,
        }
        host["selfheal_aws"] = {
            "region": REGION,
            "endpoint_url": proxy.url,
            **host_vars.get("selfheal_aws", {}),
        }
        inventory[name] = host
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": inventory}}))
    cmd = [ansible_bin("ansible-playbook"), "-i", str(path), "-e", "target=all"]
    cmd += ["-e", json.dumps({"remedy": action, **(extra or {})})]
    if check:
        cmd.append("--check")
    cmd.append(str(PLAYBOOK))
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={**os.environ, **CREDENTIALS},
        check=False,
    )


def recap(result: subprocess.CompletedProcess, host: str = "web01") -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith(f"{host} "))


def ok(result: subprocess.CompletedProcess, host: str = "web01") -> str:
    assert f"{host} " in result.stdout and "failed=0" in recap(result, host), (
        result.stdout + result.stderr
    )
    return recap(result, host)


def refused(result: subprocess.CompletedProcess, host: str) -> None:
    """The host was refused by the compliance check, with the message a human can act on."""
    assert result.returncode != 0
    assert "failed=1" in recap(result, host)
    assert (
        f"{host} is not cleared for automated remediation: host variables selfheal_managed "
        'must equal {"selfheal_managed": true}'
    ) in result.stdout


UNTAGGED = {"selfheal_managed": False, "selfheal_aws": {"instance_id": "i-0123456789abcdef0"}}


def set_alarm(proxy: RecordingProxy, instance_id: str, state: str) -> None:
    cloudwatch = client(proxy, "cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=f"{instance_id}-status",
        Namespace="AWS/EC2",
        MetricName="StatusCheckFailed_Instance",
        Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(
        AlarmName=f"{instance_id}-status", StateValue=state, StateReason="test"
    )


# --- reboot -------------------------------------------------------------------------------


def test_reboot_restarts_an_impaired_instance_once(tmp_path: Path, aws: RecordingProxy) -> None:
    instance = launch(aws)
    healthy = {"name": "guest", "kind": "command", "read_only": True, "argv": ["true"]}
    # web02 lacks the compliance tag: refused in every run, before any API call for it.
    hosts = {
        "web01": {"selfheal_aws": {"instance_id": instance, "health_checks": [healthy]}},
        "web02": UNTAGGED,
    }
    set_alarm(aws, instance, "ALARM")
    aws.calls.clear()
    aws.bodies.clear()
    dry = run(tmp_path, aws, "reboot", hosts, check=True)
    assert "changed=1" in ok(dry)
    assert f"would stop and start {instance}" in dry.stdout
    assert f"{instance}-status" in dry.stdout  # names the alarm that makes it act
    assert aws.writes() == []
    refused(dry, "web02")

    first = run(tmp_path, aws, "reboot", hosts)
    assert "changed=1" in ok(first)
    assert aws.writes() == ["StopInstances", "StartInstances"]
    state = client(aws, "ec2").describe_instances(InstanceIds=[instance])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    refused(first, "web02")

    # CloudWatch re-evaluates the alarm once the status check passes (moto does not).
    set_alarm(aws, instance, "OK")
    aws.calls.clear()
    second = run(tmp_path, aws, "reboot", hosts)
    assert "changed=0" in ok(second)
    assert aws.writes() == []
    assert not any(b"i-0123456789abcdef0" in body for body in aws.bodies)


# --- recovery alarm -----------------------------------------------------------------------


def test_recovery_alarm_is_created_once_with_the_recover_action(
    tmp_path: Path, aws: RecordingProxy
) -> None:
    instance = launch(aws)
    host = {"selfheal_aws": {"instance_id": instance}}
    cloudwatch = client(aws, "cloudwatch")
    aws.calls.clear()

    dry = run(tmp_path, aws, "recovery_alarm", {"web01": host}, check=True)
    assert "changed=1" in ok(dry)
    assert aws.writes() == []
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []

    assert "changed=1" in ok(run(tmp_path, aws, "recovery_alarm", {"web01": host}))
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in alarms] == [f"selfheal-recover-{instance}"]
    assert alarms[0]["MetricName"] == "StatusCheckFailed_System"
    assert alarms[0]["AlarmActions"] == [f"arn:aws:automate:{REGION}:ec2:recover"]
    assert alarms[0]["Dimensions"] == [{"Name": "InstanceId", "Value": instance}]

    aws.calls.clear()
    assert "changed=0" in ok(run(tmp_path, aws, "recovery_alarm", {"web01": host}))
    assert aws.writes() == []


# --- Auto Scaling instance refresh (moto: up to the decision only, see the module doc) ----


def make_group(proxy: RecordingProxy) -> str:
    ec2 = client(proxy, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="web-asg",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
    )
    client(proxy, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="web",
        MinSize=2,
        MaxSize=3,
        DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateName": "web-asg", "Version": "$Latest"},
        AvailabilityZones=[f"{REGION}a"],
    )
    return "web"


def test_instance_refresh_leaves_a_healthy_group_alone(tmp_path: Path, aws: RecordingProxy) -> None:
    group = make_group(aws)
    aws.calls.clear()
    hosts = {
        "web01": {"selfheal_aws": {"autoscaling_group": group}},
        "web02": {"selfheal_managed": "yes", "selfheal_aws": {"autoscaling_group": group}},
    }
    result = run(tmp_path, aws, "instance_refresh", hosts, extra={"force": False})
    assert "changed=0" in ok(result)
    assert "DescribeAutoScalingGroups" in aws.calls
    assert aws.writes() == []
    refused(result, "web02")


# --- spot interruption fallback -----------------------------------------------------------


def test_spot_fallback_launches_exactly_one_on_demand_replacement(
    tmp_path: Path, aws: RecordingProxy
) -> None:
    ec2 = client(aws, "ec2")
    interrupted = launch(aws, spot=True, name="web01")
    by_hand = launch(aws, spot=True, name="web02")
    running = launch(aws, spot=True, name="web03")
    ec2.terminate_instances(InstanceIds=[interrupted, by_hand])
    # moto cannot reclaim spot capacity: web01's termination stands in for an interruption.
    # web02's is a person terminating it (the default codes), web03 still runs.
    hosts = {
        "web01": {
            "selfheal_aws": {"instance_id": interrupted},
            "aws_spot_fallback_interruption_codes": ["Client.UserInitiatedShutdown"],
        },
        "web02": {"selfheal_aws": {"instance_id": by_hand}},
        "web03": {
            "selfheal_aws": {"instance_id": running},
            "aws_spot_fallback_interruption_codes": ["Client.UserInitiatedShutdown"],
        },
    }
    aws.calls.clear()
    dry = run(tmp_path, aws, "spot_fallback", hosts, check=True)
    assert "changed=1" in ok(dry, "web01")
    assert "changed=0" in ok(dry, "web02") and "changed=0" in ok(dry, "web03")
    assert f"would launch an on-demand replacement of {interrupted}" in dry.stdout
    assert aws.writes() == []

    first = run(tmp_path, aws, "spot_fallback", hosts)
    assert "changed=1" in ok(first, "web01")
    assert "changed=0" in ok(first, "web02") and "changed=0" in ok(first, "web03")
    second = run(tmp_path, aws, "spot_fallback", hosts)
    assert all("changed=0" in ok(second, h) for h in hosts)
    assert aws.writes().count("RunInstances") == 1

    def replacements(of: str) -> list[dict]:
        found = ec2.describe_instances(Filters=[{"Name": "tag:selfheal:replaces", "Values": [of]}])
        return [i for r in found["Reservations"] for i in r["Instances"]]

    assert replacements(by_hand) == [] and replacements(running) == []
    (new,) = replacements(interrupted)
    assert new["State"]["Name"] == "running"
    assert new.get("InstanceLifecycle") is None  # on-demand
    tags = {t["Key"]: t["Value"] for t in new["Tags"]}
    assert tags["Name"] == "web01" and tags["team"] == "sre"
    assert tags["selfheal:market"] == "on-demand"
    assert new["InstanceType"] == "t3.micro"
