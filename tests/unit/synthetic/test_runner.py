"""Running journeys against a real HTTP shop on 127.0.0.1 (login -> search -> checkout)."""

from __future__ import annotations

import json

from unit.synthetic.shop_app import write_journey

from selfheal.synthetic.journey import journey_from_data, load_journey
from selfheal.synthetic.runner import run_journey


def test_the_journey_passes_and_the_token_reaches_later_steps(tmp_path, shop) -> None:
    result = run_journey(load_journey(write_journey(tmp_path / "j.yml", shop.url)))
    assert result.ok, result.as_dict()
    assert [s.name for s in result.steps] == ["login", "search", "checkout"]
    assert [s.status for s in result.steps] == [200, 200, 200]
    login, search, checkout = shop.seen
    assert login["body"] == {"user": "alice", "password": "s3cret"}
    assert "Authorization" not in login["headers"]
    assert search["headers"]["Authorization"] == f"Bearer {shop.token}"
    assert checkout["headers"]["Authorization"] == f"Bearer {shop.token}"
    assert checkout["body"] == {"item": "sku-42", "quantity": 1}


def test_a_broken_step_fails_the_journey_there_and_stops(tmp_path, shop) -> None:
    shop.broken.add("search")
    result = run_journey(load_journey(write_journey(tmp_path / "j.yml", shop.url)))
    assert not result.ok
    assert result.failed_step.name == "search"
    assert result.failed_step.failure == "status 500, expected 200"
    assert [s.name for s in result.steps] == ["login", "search"]  # checkout never ran
    assert [r["path"] for r in shop.seen] == ["/login", "/search?q=widget"]


def test_a_slow_step_breaches_its_latency_assertion(tmp_path, shop) -> None:
    shop.delay["search"] = 0.3
    journey = load_journey(write_journey(tmp_path / "j.yml", shop.url, search_max_ms=100))
    result = run_journey(journey)
    assert result.failed_step.name == "search"
    assert "over max_latency_ms 100" in result.failed_step.failure
    assert result.failed_step.status == 200


def test_a_wrong_password_fails_the_status_assertion(tmp_path, shop) -> None:
    path = tmp_path / "j.yml"
    write_journey(path, shop.url)
    path.write_text(path.read_text().replace("password: s3cret", "password: wrong"))
    result = run_journey(load_journey(path))
    assert result.failed_step.name == "login"
    assert result.failed_step.failure == "status 401, expected 200"


def test_response_values_are_data_never_evaluated(tmp_path, shop) -> None:
    hostile = "{{ 7 * 7 }}${token}${user}{% raw %}$(id)"
    shop.search_item = hostile
    result = run_journey(load_journey(write_journey(tmp_path / "j.yml", shop.url)))
    assert result.ok, result.as_dict()
    checkout = shop.seen[-1]
    assert checkout["body"]["item"] == hostile  # byte for byte, nothing substituted
    assert shop.token not in json.dumps(checkout["body"])


def test_extracted_values_cannot_reshape_a_url(shop) -> None:
    shop.search_item = "../admin?drop=1#x"
    journey = journey_from_data(
        {
            "name": "paths",
            "base_url": shop.url,
            "steps": [
                {
                    "name": "login",
                    "method": "POST",
                    "url": "/login",
                    "json": {"password": "s3cret"},
                    "extract": {"token": {"json": "$.token"}},
                },
                {
                    "name": "search",
                    "url": "/search",
                    "headers": {"Authorization": "Bearer ${token}"},
                    "extract": {"item": {"json": "$.results[0].id"}},
                },
                {
                    "name": "order",
                    "url": "/orders/${item}",
                    "headers": {"Authorization": "Bearer ${token}"},
                },
            ],
        }
    )
    result = run_journey(journey)
    assert result.ok, result.as_dict()
    assert shop.seen[-1]["path"] == "/orders/..%2Fadmin%3Fdrop%3D1%23x"


def test_retries_are_off_by_default_and_bounded_when_set(shop) -> None:
    shop.broken.add("login")
    step = {"name": "login", "method": "POST", "url": f"{shop.url}/login", "json": {}}
    assert run_journey(journey_from_data({"name": "j", "steps": [step]})).steps[0].attempts == 1
    shop.seen.clear()
    result = run_journey(journey_from_data({"name": "j", "steps": [{**step, "retries": 2}]}))
    assert result.steps[0].attempts == 3
    assert len(shop.seen) == 3


def test_an_unreachable_service_fails_with_a_reason(unused_port) -> None:
    step = {"name": "ping", "url": f"http://127.0.0.1:{unused_port}/", "timeout": "1s"}
    result = run_journey(journey_from_data({"name": "j", "steps": [step]}))
    assert not result.ok
    assert result.failed_step.failure.startswith("request failed: ConnectionRefusedError")


def test_a_missing_extraction_fails_the_step(shop) -> None:
    step = {
        "name": "login",
        "method": "POST",
        "url": f"{shop.url}/login",
        "json": {"password": "s3cret"},
        "extract": {"session": {"json": "$.session.id"}},
    }
    result = run_journey(journey_from_data({"name": "j", "steps": [step]}))
    assert result.failed_step.failure == "extract session: JSON path $.session.id has no value"
