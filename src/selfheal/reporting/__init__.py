"""Incident reporting: outcome classes, postmortem drafts and the aggregate report.

    from selfheal.reporting import classify, gather, build, to_markdown

See docs/reporting.md.
"""

from selfheal.reporting.facts import IncidentFacts, gather, runbook_output
from selfheal.reporting.outcomes import OUTCOMES, classify
from selfheal.reporting.postmortem import AuditExtract, build, load_audit, to_html, to_markdown
from selfheal.reporting.summary import collect, summarise

__all__ = [
    "OUTCOMES",
    "AuditExtract",
    "IncidentFacts",
    "build",
    "classify",
    "collect",
    "gather",
    "load_audit",
    "runbook_output",
    "summarise",
    "to_html",
    "to_markdown",
]
