"""`selfheal serve --check` and `selfheal approvals` against a real uvicorn server on an
ephemeral 127.0.0.1 port; the SNS handshake when confirmation is switched on."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from unit.dispatcher.helpers import ALICE, BOB, TOKEN, am_alert, am_body, serving, wait_for

from selfheal.cli import main
from selfheal.cli.approvals import call
from selfheal.dispatcher import app as app_module


@pytest.fixture
def served(make_dispatcher):
    d, _ = make_dispatcher()
    with serving(d) as url:
        yield d, url


def test_approvals_cli(served, capsys) -> None:
    d, url = served
    status, body = call(url, TOKEN, "POST", "/alerts/alertmanager")  # an empty JSON object
    assert status == 422 and body["field"] == "alerts"
    req = urllib.request.Request(
        f"{url}/alerts/alertmanager",
        data=json.dumps(am_body(am_alert({"alertname": "OpsRisky", "host": "web-01"}))).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 202
    wait_for(lambda: d.pending_approvals())
    assert main(["approvals", "--url", url, "--token", ALICE, "list"]) == 0
    assert "incident-1" in capsys.readouterr().out
    assert main(["approvals", "--url", url, "--token", BOB, "approve", "incident-1"]) == 1
    capsys.readouterr()
    why = ["--reason", "web-01 is drained"]
    assert main(["approvals", "--url", url, "--token", ALICE, "approve", "incident-1", *why]) == 0
    assert "incident-1: approved" in capsys.readouterr().out
    comments = d.state.load_approval("incident-1")["comments"]
    assert [(c["verdict"], c["reason"]) for c in comments] == [("approve", "web-01 is drained")]
    wait_for(lambda: d.store.list_runs(incident_id=1))
    assert main(["approvals", "--url", "http://127.0.0.1:9", "--token", ALICE, "list"]) == 3


def test_runs_cli_lists_and_cancels(make_dispatcher, env, capsys) -> None:
    operator = "cli-operator-token-0123"
    tokens = [
        *env["config"]["tokens"],
        {"name": "olga", "token": operator, "console_role": "operator"},
    ]
    d, client = make_dispatcher(workers=0, tokens=tokens)  # the run stays queued
    with serving(d) as url:
        labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
        client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
        [run] = wait_for(lambda: d.store.list_runs(status="queued"))
        assert main(["runs", "--url", url, "--token", operator, "list"]) == 0
        assert f"{run.id:>6} queued" in capsys.readouterr().out
        cancel = ["runs", "--url", url, "--token", operator, "cancel", str(run.id)]
        with pytest.raises(SystemExit):  # --reason is required
            main(cancel)
        capsys.readouterr()
        assert main(["runs", "--url", url, "--token", ALICE, *cancel[5:], "--reason", "x"]) == 1
        assert "lacks the 'operate' scope" in capsys.readouterr().out
        assert main([*cancel, "--reason", "web-01 is being rebuilt"]) == 0
        assert f"run {run.id}: canceled" in capsys.readouterr().out
        assert d.store.get_run(run.id).reason == "canceled by olga: web-01 is being rebuilt"
        assert main([*cancel, "--reason", "again"]) == 1  # 409: already canceled


def test_serve_check(env, tmp_path, capsys) -> None:
    cfg = tmp_path / "d.yml"
    cfg.write_text(yaml.safe_dump({**env["config"], "workers": 1}))
    assert main(["serve", "--config", str(cfg), "--check"]) == 0
    assert "configuration ok" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({**env["config"], "sources": {"grafana": {"auth": "x"}}}))
    assert main(["serve", "--config", str(bad), "--check"]) == 2
    assert "sources.grafana.auth" in capsys.readouterr().err


def test_sns_confirmation_when_enabled(make_dispatcher, monkeypatch) -> None:
    fetched = []

    def fake_fetch(url, timeout, limit):  # the checked URL: its text, host, port and path
        fetched.append(url)
        assert (url.host, url.port) == ("sns.eu-west-1.amazonaws.com", 443)
        return b"<ConfirmSubscriptionResponse/>"

    monkeypatch.setattr(app_module, "fetch_https", fake_fetch)
    d, client = make_dispatcher(
        sources={"cloudwatch_sns": {"confirm_subscriptions": True, "verify_signatures": False}}
    )
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok"
    body = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m",
        "Token": "tok",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:t",
        "SubscribeURL": url,
    }
    r = client.post("/alerts/cloudwatch_sns", body, token=TOKEN)
    assert r.status == 200 and r.json()["status"] == "confirmed"
    assert fetched == [url]
    assert d.subscriptions[-1]["confirmed"] is True
    # a SubscribeURL off AWS is refused by intake before anything is fetched
    r = client.post(
        "/alerts/cloudwatch_sns", {**body, "SubscribeURL": "https://evil.example/x"}, token=TOKEN
    )
    assert r.status == 422 and r.json()["field"] == "SubscribeURL"
    assert fetched == [url]
