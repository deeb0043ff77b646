"""Run a runbook as an AWX / Automation Controller job instead of a local playbook.

A small client for the API v2 (bearer token, standard library only): launch a job
template or a workflow job template with ``extra_vars`` and ``limit``, follow the job to
a terminal status with bounded, backed-off polling, cancel it on timeout, and fetch its
output for the record.

Alert values reach AWX as data: ``extra_vars`` is sent as YAML with every string tagged
``!unsafe`` (the same encoding as local runs), so the playbook never templates them. A
launch whose response lists ``ignored_fields`` fails loudly: the template does not prompt
on launch for those fields, and running it without them would act on the wrong hosts or
without the incident's data.

Dispatcher config::

    awx:
      url: https://awx.example.com
      token_file: secrets/awx.token      # or token:, or the SELFHEAL_AWX_TOKEN variable
      poll_s: 2                          # first poll interval; grows to poll_max_s
      poll_max_s: 15
    runbooks:
      restart-service: {backend: awx, job_template: 12}
      db-failover: {backend: awx, workflow_job_template: 7}
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selfheal.dispatcher.execute import unsafe_yaml
from selfheal.errors import ConfigError, SelfhealError
from selfheal.runner import RunResult

TERMINAL = ("successful", "failed", "error", "canceled")
BACKENDS = ("ansible-runner", "awx")
TOKEN_ENV = "SELFHEAL_AWX_TOKEN"
MAX_STDOUT = 1024 * 1024  # bytes of job output kept for the record


class AWXError(SelfhealError):
    """The AWX API refused a request or answered something unexpected."""


@dataclass(frozen=True)
class AWXSettings:
    url: str
    token: str
    poll_s: float = 2.0
    poll_max_s: float = 15.0
    request_timeout_s: float = 30.0
    verify_tls: bool = True
    ca_file: str | None = None


@dataclass(frozen=True)
class RunbookBackend:
    """Where a runbook runs: ansible-runner (the default) or an AWX template."""

    runbook: str
    backend: str = "ansible-runner"
    job_template: int | None = None
    workflow_job_template: int | None = None

    @property
    def is_awx(self) -> bool:
        return self.backend == "awx"


@dataclass
class AWXOutcome:
    kind: str  # job | workflow_job
    job_id: int
    status: str  # a TERMINAL status, or "timeout"
    explanation: str = ""
    stdout: str = ""
    approvals: list[int] = field(default_factory=list)  # approval nodes it waited on

    @property
    def ok(self) -> bool:
        return self.status == "successful"


# -- configuration ----------------------------------------------------------------------


def _number(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError("must be a positive number", f"{where}.{key}")
    return float(value)


def awx_settings_from_data(raw: Any, base: Path) -> AWXSettings | None:
    """The ``awx:`` section of the dispatcher config."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", "awx")
    known = {
        "url",
        "token",
        "token_file",
        "poll_s",
        "poll_max_s",
        "request_timeout_s",
        "verify_tls",
        "ca_file",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}", "awx")
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("must be an http(s) URL", "awx.url")
    if raw.get("token") is not None and raw.get("token_file") is not None:
        raise ConfigError("give the token or the file, not both", "awx.token")
    token = raw.get("token")
    if raw.get("token_file") is not None:
        path = Path(str(raw["token_file"])).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read ({exc.strerror})", "awx.token_file") from exc
    token = token or os.environ.get(TOKEN_ENV)
    if not isinstance(token, str) or not token:
        raise ConfigError(f"missing token, token_file or ${TOKEN_ENV}", "awx.token")
    ca_file = raw.get("ca_file")
    if ca_file is not None:
        ca_path = Path(str(ca_file)).expanduser()
        ca_file = str(ca_path if ca_path.is_absolute() else base / ca_path)
    return AWXSettings(
        url=url.rstrip("/"),  # type: ignore[union-attr]
        token=token,
        poll_s=_number(raw, "poll_s", 2.0, "awx"),
        poll_max_s=_number(raw, "poll_max_s", 15.0, "awx"),
        request_timeout_s=_number(raw, "request_timeout_s", 30.0, "awx"),
        verify_tls=bool(raw.get("verify_tls", True)),
        ca_file=ca_file,
    )


def _template_id(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("must be a positive integer (the template's id)", f"{where}.{key}")
    return value


def backends_from_data(raw: Any, awx: AWXSettings | None) -> dict[str, RunbookBackend]:
    """The ``runbooks:`` section: per-runbook backend selection."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of runbook names", "runbooks")
    out = {}
    for name, entry in raw.items():
        where = f"runbooks.{name}"
        if not isinstance(entry, dict):
            raise ConfigError("must be a mapping", where)
        unknown = set(entry) - {"backend", "job_template", "workflow_job_template"}
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}", where)
        backend = entry.get("backend", "ansible-runner")
        if backend not in BACKENDS:
            raise ConfigError(f"must be one of {', '.join(BACKENDS)}", f"{where}.backend")
        jt = _template_id(entry, "job_template", where)
        wjt = _template_id(entry, "workflow_job_template", where)
        if backend == "awx":
            if awx is None:
                raise ConfigError("backend awx needs the awx: section (url, token)", where)
            if (jt is None) == (wjt is None):
                raise ConfigError("give job_template or workflow_job_template (one)", where)
        elif jt is not None or wjt is not None:
            raise ConfigError("templates need backend: awx", where)
        out[str(name)] = RunbookBackend(str(name), backend, jt, wjt)
    return out


# -- the client -------------------------------------------------------------------------


class AWXClient:
    def __init__(self, settings: AWXSettings, *, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._sleep = sleep
        self._context: ssl.SSLContext | None = None
        if settings.url.startswith("https:"):
            self._context = ssl.create_default_context(cafile=settings.ca_file)
            if not settings.verify_tls:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, text: bool = False
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.settings.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.settings.token}",
                "Accept": "text/plain" if text else "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.settings.request_timeout_s, context=self._context
            ) as response:
                raw = response.read(MAX_STDOUT + 1 if text else 16 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2048).decode("utf-8", "replace").strip()
            raise AWXError(f"{method} {path}: HTTP {exc.code} {detail[:300]}") from None
        except OSError as exc:
            raise AWXError(f"{method} {path}: {exc}") from None
        if text:
            return raw[:MAX_STDOUT].decode("utf-8", "replace")
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise AWXError(f"{method} {path}: the answer is not JSON") from None

    # -- endpoints --

    def launch(
        self, backend: RunbookBackend, extra_vars: Mapping[str, Any], limit: str
    ) -> tuple[str, int]:
        """Launch the runbook's template; returns (kind, job id)."""
        if backend.job_template is not None:
            path, kind = f"/api/v2/job_templates/{backend.job_template}/launch/", "job"
        else:
            path = f"/api/v2/workflow_job_templates/{backend.workflow_job_template}/launch/"
            kind = "workflow_job"
        answer = self._request(
            "POST", path, {"extra_vars": unsafe_yaml(extra_vars), "limit": limit}
        )
        ignored = answer.get("ignored_fields") or {}
        job_id = answer.get(kind, answer.get("id"))
        if ignored:
            if isinstance(job_id, int):  # launched without our fields: stop it at once
                self._cancel_quietly(kind, job_id)
            fields = ", ".join(sorted(map(str, ignored)))
            raise AWXError(
                f"AWX ignored {fields} at launch of {path}: enable 'Prompt on launch' for"
                f" {fields} on the template"
            )
        if not isinstance(job_id, int):
            raise AWXError(f"POST {path}: no {kind} id in the answer")
        return kind, job_id

    def job(self, kind: str, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/{kind}s/{job_id}/")

    def cancel(self, kind: str, job_id: int) -> None:
        self._request("POST", f"/api/v2/{kind}s/{job_id}/cancel/", {})

    def stdout(self, kind: str, job_id: int) -> str:
        if kind == "job":
            return self._request("GET", f"/api/v2/jobs/{job_id}/stdout/?format=txt", text=True)
        # a workflow has no output of its own: list its nodes and their jobs instead
        nodes = self._request(
            "GET", f"/api/v2/workflow_jobs/{job_id}/workflow_nodes/?page_size=200"
        )
        lines = []
        for node in nodes.get("results", []):
            job = (node.get("summary_fields") or {}).get("job") or {}
            lines.append(
                f"node {node.get('id')}: {job.get('type', '-')} {job.get('id', '-')}"
                f" {job.get('name', '')} {job.get('status', 'not run')}"
            )
        return "\n".join(lines) + "\n"

    def pending_approvals(self, workflow_job_id: int) -> list[int]:
        """Approval nodes of this workflow job waiting for a human: ids to use with
        ``/api/v2/workflow_approvals/{id}/approve/``. Read from the job's own nodes, so other
        workflows' approvals (and paging through all of them) do not matter."""
        nodes = self._request(
            "GET", f"/api/v2/workflow_jobs/{workflow_job_id}/workflow_nodes/?page_size=200"
        )
        out = []
        for node in nodes.get("results", []):
            job = (node.get("summary_fields") or {}).get("job") or {}
            if (
                job.get("type") == "workflow_approval"
                and job.get("status") == "pending"
                and isinstance(job.get("id"), int)
            ):
                out.append(job["id"])
        return out

    # -- a whole run --

    def run(
        self,
        backend: RunbookBackend,
        extra_vars: Mapping[str, Any],
        limit: str,
        *,
        timeout_s: float,
        cancel: Callable[[], bool] = lambda: False,
        on_waiting: Callable[[list[int]], None] | None = None,
        launched: Callable[[int], None] | None = None,
    ) -> AWXOutcome:
        """Launch and follow to the end; on timeout (or `cancel()`) the job is canceled."""
        kind, job_id = self.launch(backend, extra_vars, limit)
        if launched is not None:
            launched(job_id)
        deadline = time.monotonic() + timeout_s
        interval = self.settings.poll_s
        waiting: list[int] = []
        approvals: list[int] = []
        status = "pending"
        info: dict[str, Any] = {}
        while True:
            try:
                info = self.job(kind, job_id)
                status = str(info.get("status", ""))
                if status in TERMINAL:
                    break
                if kind == "workflow_job" and status == "running":
                    now_waiting = self.pending_approvals(job_id)
                    if now_waiting and now_waiting != waiting and on_waiting is not None:
                        on_waiting(now_waiting)
                    approvals += [a for a in now_waiting if a not in approvals]
                    waiting = now_waiting
            except AWXError as exc:  # a blip while following: keep trying until the deadline
                status = f"unknown ({exc})"
            stopped = cancel()
            if stopped or time.monotonic() >= deadline:
                self._cancel_quietly(kind, job_id)
                why = "canceled by the dispatcher" if stopped else f"no end in {timeout_s:.0f}s"
                state = "waiting for approval" if waiting else f"still {status}"
                return AWXOutcome(
                    kind,
                    job_id,
                    "canceled" if stopped else "timeout",
                    f"{kind} {job_id} {state}: {why}; cancel requested",
                    self._stdout_quietly(kind, job_id),
                    approvals,
                )
            self._sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(self.settings.poll_max_s, interval * 1.5)
        explanation = str(info.get("job_explanation") or "")
        return AWXOutcome(
            kind, job_id, status, explanation, self._stdout_quietly(kind, job_id), approvals
        )

    def _cancel_quietly(self, kind: str, job_id: int) -> None:
        with contextlib.suppress(AWXError):  # the status tells; the run fails either way
            self.cancel(kind, job_id)

    def _stdout_quietly(self, kind: str, job_id: int) -> str:
        try:
            return self.stdout(kind, job_id)
        except AWXError as exc:
            return f"(output unavailable: {exc})\n"


# -- the dispatcher's side ----------------------------------------------------------------


def awx_executor(
    client: AWXClient,
    backend: RunbookBackend,
    on_waiting: Callable[[int, list[int]], None] | None = None,
) -> Callable[..., RunResult]:
    """A stand-in for `execute.execute` that runs the runbook's AWX template instead.

    The target (already checked against the inventory) is the job's ``limit``; the job's
    output goes to ``<base_dir>/<prefix>.../stdout.txt`` like a local run's artifacts.
    """

    def run(
        _playbook: Path | None,
        _inventory: Path,
        *,
        extravars: Mapping[str, Any],
        envvars: Mapping[str, str] | None = None,
        timeout: int | None = None,
        base_dir: Path,
        prefix: str = "run-",
        cancel: Callable[[], bool] | None = None,
    ) -> RunResult:
        base_dir.mkdir(parents=True, exist_ok=True)
        record = Path(tempfile.mkdtemp(prefix=prefix + "awx-", dir=base_dir))
        job_ids: list[int] = []

        def waiting(approvals: list[int]) -> None:
            if on_waiting is not None and job_ids:
                on_waiting(job_ids[0], approvals)

        try:
            outcome = client.run(
                backend,
                extravars,
                str(extravars["target"]),
                timeout_s=float(timeout or 1800),
                cancel=cancel or (lambda: False),
                on_waiting=waiting,
                launched=job_ids.append,
            )
        except AWXError as exc:
            (record / "error.txt").write_text(f"{exc}\n")
            return RunResult(
                status="failed", rc=1, private_data_dir=record, failed_tasks=[str(exc)]
            )
        (record / "stdout.txt").write_text(outcome.stdout)
        (record / "job.json").write_text(
            json.dumps(
                {
                    "kind": outcome.kind,
                    "id": outcome.job_id,
                    "status": outcome.status,
                    "job_explanation": outcome.explanation,
                    "approvals": outcome.approvals,
                },
                indent=2,
            )
        )
        where = f"awx {outcome.kind} {outcome.job_id}"
        detail = f"{where} {outcome.status}" + (
            f" ({outcome.explanation})" if outcome.explanation else ""
        )
        return RunResult(
            status="successful" if outcome.ok else outcome.status,
            rc=0 if outcome.ok else 1,
            private_data_dir=record,
            failed_tasks=[] if outcome.ok else [detail],
        )

    return run
