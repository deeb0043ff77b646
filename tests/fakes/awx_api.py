"""A contract mock of the AWX / Automation Controller REST API v2, for tests where no AWX can
run (it needs Kubernetes and a database).

It follows the documented API for exactly the endpoints the dispatcher's AWX backend uses:

- ``POST /api/v2/job_templates/{id}/launch/`` and
  ``POST /api/v2/workflow_job_templates/{id}/launch/``: 201 with the new job's id under
  ``job`` (or ``workflow_job``) and ``id``, plus ``ignored_fields``: runtime fields the
  template does not prompt for on launch (``ask_variables_on_launch``,
  ``ask_limit_on_launch``) are ignored and listed there, and the job starts without them;
- ``GET /api/v2/jobs/{id}/`` and ``/api/v2/workflow_jobs/{id}/``: ``status`` moves
  ``pending`` -> ``running`` -> ``successful`` | ``failed`` as it is polled (or stays
  ``running``: a job that hangs), with ``failed`` and ``job_explanation``;
- ``POST .../{id}/cancel/``: 202, the job ends ``canceled``;
- ``GET /api/v2/jobs/{id}/stdout/?format=txt``: the output as text;
- ``GET /api/v2/workflow_jobs/{id}/workflow_nodes/``: the nodes with
  ``summary_fields.job`` (type, id, status);
- ``GET /api/v2/workflow_approvals/?status=pending``: approval nodes waiting, each with
  ``summary_fields.source_workflow_job``; ``POST /api/v2/workflow_approvals/{id}/approve/``
  and ``.../deny/``: 204, the workflow goes on (or fails);
- ``failing_polls``: the next N status reads answer 502, as a proxy in front of AWX may;
- bearer-token auth: 401 ``{"detail": ...}`` without the token; 404 for unknown objects.

``extra_vars`` is parsed as YAML like AWX does, keeping ``!unsafe`` tags visible
(`Unsafe`), so tests can assert that alert data was sent untemplatable. Every request is
recorded in ``requests``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


@dataclass(frozen=True)
class Unsafe:
    value: str


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


@dataclass
class Template:
    outcome: str = "successful"  # successful | failed | hang
    ask_variables_on_launch: bool = True
    ask_limit_on_launch: bool = True
    approval: bool = False  # workflows: an approval node before the job node
    stdout: str = "PLAY RECAP\nweb-01 : ok=1 changed=1 failed=0\n"


@dataclass
class Job:
    id: int
    kind: str  # job | workflow_job
    template: int
    outcome: str
    extra_vars: Any
    limit: str | None
    stdout: str
    approval: int | None = None
    status: str = "pending"
    polls: int = 0
    statuses: list[str] = field(default_factory=list)  # what each GET answered


class FakeAWX:
    def __init__(self, token: str):
        self.token = token
        self.job_templates: dict[int, Template] = {}
        self.workflow_job_templates: dict[int, Template] = {}
        self.jobs: dict[int, Job] = {}
        self.approvals: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.cancels: list[tuple[str, int]] = []
        self.failing_polls = 0  # the next N job GETs answer 502 (a proxy blip)
        self._ids = iter(range(100, 100000))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAWX:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def launches(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.requests if path.endswith("/launch/")]

    # -- behaviour --

    def _launch(self, kind: str, template_id: int, body: dict) -> tuple[int, dict]:
        templates = self.job_templates if kind == "job" else self.workflow_job_templates
        template = templates.get(template_id)
        if template is None:
            return 404, {"detail": "Not found."}
        ignored: dict[str, Any] = {}
        extra_vars = None
        if "extra_vars" in body:
            parsed = yaml.load(body["extra_vars"], Loader=_Loader)
            if template.ask_variables_on_launch:
                extra_vars = parsed
            else:
                ignored["extra_vars"] = parsed if not isinstance(parsed, dict) else dict(parsed)
        limit = None
        if "limit" in body:
            if template.ask_limit_on_launch:
                limit = body["limit"]
            else:
                ignored["limit"] = body["limit"]
        job = Job(
            next(self._ids),
            kind,
            template_id,
            template.outcome,
            extra_vars,
            limit,
            template.stdout,
        )
        if template.approval:
            job.approval = next(self._ids)
        self.jobs[job.id] = job
        answer = {
            kind: job.id,
            "id": job.id,
            "type": kind,
            "url": f"/api/v2/{kind}s/{job.id}/",
            "status": "pending",
            "ignored_fields": {
                k: str(v) if not isinstance(v, str) else v for k, v in ignored.items()
            },
        }
        return 201, answer

    def _poll(self, job: Job) -> dict:
        job.polls += 1
        if job.status == "pending" and job.polls >= 2:
            job.status = "running"
            if job.approval is not None:
                self.approvals[job.approval] = {"status": "pending", "workflow_job": job.id}
        elif job.status == "running" and job.outcome != "hang":
            approval = self.approvals.get(job.approval) if job.approval else None
            if approval is None or approval["status"] == "approved":
                job.status = job.outcome
            elif approval["status"] == "denied":
                job.status = "failed"
        job.statuses.append(job.status)
        explanation = ""
        approval = self.approvals.get(job.approval) if job.approval else None
        if job.status == "failed" and approval and approval["status"] == "denied":
            explanation = "The approval node was denied"
        if job.status == "canceled":
            explanation = "Job was canceled"
        return {
            "id": job.id,
            "type": job.kind,
            "status": job.status,
            "failed": job.status in ("failed", "error"),
            "limit": job.limit or "",
            "job_explanation": explanation,
        }

    def _nodes(self, job: Job) -> dict:
        results = []
        if job.approval is not None:
            status = (self.approvals.get(job.approval) or {}).get("status")
            results.append(
                {
                    "id": 1,
                    "summary_fields": {
                        "job": {"id": job.approval, "type": "workflow_approval", "status": status}
                    },
                }
            )
        results.append(
            {
                "id": 2,
                "summary_fields": {
                    "job": {"id": job.id + 50000, "type": "job", "status": job.status}
                },
            }
        )
        return {"count": len(results), "results": results}

    def _pending(self) -> dict:
        results = [
            {
                "id": approval_id,
                "type": "workflow_approval",
                "status": info["status"],
                "summary_fields": {"source_workflow_job": {"id": info["workflow_job"]}},
            }
            for approval_id, info in self.approvals.items()
            if info["status"] == "pending"
        ]
        return {"count": len(results), "results": results}

    def answer(self, method: str, path: str, query: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, body))
            m = re.fullmatch(r"/api/v2/(job|workflow_job)_templates/(\d+)/launch/", path)
            if m and method == "POST":
                return self._launch(m.group(1), int(m.group(2)), body or {})
            m = re.fullmatch(
                r"/api/v2/(job|workflow_job)s/(\d+)/(cancel/|stdout/|workflow_nodes/)?", path
            )
            if m:
                job = self.jobs.get(int(m.group(2)))
                if job is None or job.kind != m.group(1):
                    return 404, {"detail": "Not found."}
                sub = m.group(3)
                if sub is None and method == "GET":
                    if self.failing_polls > 0:
                        self.failing_polls -= 1
                        return 502, {"detail": "Bad Gateway"}
                    return 200, self._poll(job)
                if sub == "cancel/" and method == "POST":
                    if job.status in ("successful", "failed", "error", "canceled"):
                        return 405, {"error": "not allowed"}
                    self.cancels.append((job.kind, job.id))
                    job.status = "canceled"
                    return 202, None
                if sub == "stdout/" and method == "GET" and job.kind == "job":
                    if "format=txt" not in query:
                        return 400, {"detail": "format"}
                    return 200, job.stdout
                if sub == "workflow_nodes/" and method == "GET" and job.kind == "workflow_job":
                    return 200, self._nodes(job)
                return 405, {"detail": f'Method "{method}" not allowed.'}
            if path == "/api/v2/workflow_approvals/" and method == "GET":
                return 200, self._pending()
            m = re.fullmatch(r"/api/v2/workflow_approvals/(\d+)/(approve|deny)/", path)
            if m and method == "POST":
                approval = self.approvals.get(int(m.group(1)))
                if approval is None:
                    return 404, {"detail": "Not found."}
                if approval["status"] != "pending":
                    return 400, {"error": "This workflow step has already been approved or denied."}
                approval["status"] = "approved" if m.group(2) == "approve" else "denied"
                return 204, None
            return 404, {"detail": "Not found."}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(401, {"detail": "Authentication credentials were not provided."})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, {"detail": "JSON parse error"})
                    return
                path, _, query = self.path.partition("?")
                status, answer = fake.answer(self.command, path, query, body)
                self._send(status, answer)

            def _send(self, status: int, answer: Any) -> None:
                if isinstance(answer, str):
                    data, kind = answer.encode(), "text/plain"
                elif answer is None:
                    data, kind = b"", "application/json"
                else:
                    data, kind = json.dumps(answer).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        return Handler
