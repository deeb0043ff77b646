// The selfheal operator console. Plain DOM code; every value from the API is set with
// textContent (never parsed as HTML). The API enforces every permission; this only hides
// what the signed-in role may not do.
"use strict";

(function () {
  const TOKEN_KEY = "selfheal.token";
  const POLL_MS = 5000;
  const MAX_BACKOFF_MS = 60000;
  const MAX_POLLS = 720; // about an hour of auto-refresh, then the operator refreshes by hand

  const $ = (id) => document.getElementById(id);
  const state = { me: null, polls: 0, timer: null, failures: 0, incident: null, run: null };

  // -- helpers ----------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function say(text) {
    $("error").textContent = "";
    $("status").textContent = text;
  }

  function fail(text) {
    $("error").textContent = text;
  }

  function when(value) {
    if (!value) return "-";
    const date = new Date(value);
    return isNaN(date) ? value : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function timeEl(value) {
    return el("time", { dateTime: value || "", text: when(value) });
  }

  async function api(method, path, body, token) {
    const headers = { Authorization: "Bearer " + (token || sessionStorage.getItem(TOKEN_KEY)) };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    return { status: response.status, ok: response.ok, data };
  }

  function problem(result) {
    const data = result.data || {};
    const reasons = (data.reasons || []).map((r) => r.message).filter(Boolean);
    const text = reasons.length ? reasons.join("; ") : data.error || "request failed";
    return `HTTP ${result.status}: ${text}`;
  }

  // Replace a tbody's rows, keeping keyboard focus on the control it was on.
  function fillRows(tbody, rows) {
    const focused = document.activeElement;
    const key = focused && tbody.contains(focused) ? focused.dataset.key : null;
    tbody.replaceChildren(...rows);
    if (key) {
      const again = tbody.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  // -- sign in ----------------------------------------------------------------------------

  async function signIn(token) {
    const result = await api("GET", "/whoami", undefined, token);
    if (result.status === 401) {
      fail("The token was not accepted.");
      return false;
    }
    if (!result.ok) {
      fail(problem(result));
      return false;
    }
    if (!result.data.console_role) {
      fail("This token may not use the console (it has no read scope).");
      return false;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.me = result.data;
    $("who").textContent = state.me.name || "anonymous";
    $("role").textContent = state.me.console_role;
    $("identity").hidden = false;
    $("login-view").hidden = true;
    $("app").hidden = false;
    $("approvals-note").textContent = state.me.can_vote
      ? "Approve or deny with a reason; the reason is recorded with your vote."
      : `Your role (${state.me.console_role}) can see the queue but not vote.`;
    return true;
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(state.timer);
    state.me = null;
    $("app").hidden = true;
    $("identity").hidden = true;
    $("login-view").hidden = false;
    $("token").value = "";
    $("token").focus();
    say("Signed out.");
  }

  // -- approvals --------------------------------------------------------------------------

  function approvalCard(item) {
    const id = item.request_id;
    const fields = [
      ["Runbook", item.runbook || "-"],
      ["Target", item.target || "-"],
      ["Requested", when(item.opened_at)],
      ["Expires", when(item.expires_at)],
      ["Votes", `${(item.votes || []).length} of ${item.quorum}`],
      ["Approvers", [...(item.users || []), ...(item.groups || []).map((g) => "@" + g)].join(", ") || "-"],
    ];
    const list = el("dl");
    for (const [name, value] of fields) list.append(el("dt", { text: name }), el("dd", { text: value }));
    const card = el("li", { class: "card", "data-request": id },
      el("h3", { text: `${id}: ${item.runbook || "?"} on ${item.target || "?"}` }), list);
    if (state.me && state.me.can_vote) {
      const fieldId = "reason-" + id;
      const form = el("form", { class: "vote", "data-request": id },
        el("label", { htmlFor: fieldId, text: "Reason (required)" }),
        el("textarea", { id: fieldId, name: "reason", required: true, maxLength: 500 }),
        el("div", { class: "actions" },
          el("button", { type: "submit", value: "approve", text: "Approve" }),
          el("button", { type: "submit", value: "deny", class: "deny", text: "Deny" })));
      form.addEventListener("submit", vote);
      card.append(form);
    }
    return card;
  }

  async function vote(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const verdict = event.submitter ? event.submitter.value : "approve";
    const id = form.dataset.request;
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      fail("A reason is required.");
      form.elements.reason.focus();
      return;
    }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const result = await api("POST", `/approvals/${encodeURIComponent(id)}/${verdict}`, { reason });
      if (result.ok) {
        const status = result.data.status || verdict;
        say(status === "pending" ? `${id}: vote recorded, more approvals needed.` : `${id}: ${status}.`);
        await refresh();
        $("approvals-heading").focus();
      } else {
        fail(`${id}: ${problem(result)}`);
      }
    } catch (e) {
      fail(`${id}: the dispatcher could not be reached.`);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  function renderApprovals(items) {
    const list = $("approval-list");
    const wanted = new Map(items.map((item) => [item.request_id, item]));
    for (const card of [...list.children]) {
      if (!wanted.has(card.dataset.request)) card.remove();
    }
    const present = new Set([...list.children].map((c) => c.dataset.request));
    for (const item of items) {
      if (!present.has(item.request_id)) list.append(approvalCard(item)); // typed reasons survive polls
    }
    $("approvals-empty").hidden = items.length > 0;
  }

  // -- incidents and timeline ------------------------------------------------------------

  function labelText(labels) {
    return Object.entries(labels || {})
      .filter(([k]) => k !== "alertname")
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");
  }

  // A quarantined incident waits for an operator (a pipeline step failed on it); a folded
  // one is a symptom of another incident. Both say so where the incident is listed.
  function incidentName(i) {
    const cell = el("td", { text: i.name });
    if (i.quarantined_at) {
      cell.append(el("span", { class: "badge badge-quarantined", text: " quarantined", title: i.quarantine_reason || "" }));
    } else if (i.parent_id) {
      cell.append(el("span", { class: "badge", text: ` folded into ${i.parent_id}`, title: i.fold_reason || "" }));
    }
    return cell;
  }

  function renderIncidents(incidents) {
    const rows = incidents.map((i) => {
      const button = el("button", {
        type: "button", class: "secondary", "data-key": "timeline-" + i.id,
        text: "Timeline", ariaLabel: `Timeline of incident ${i.id}`,
      });
      button.addEventListener("click", () => showTimeline(i.id, true));
      return el("tr", { "data-incident": i.id },
        el("td", { text: i.id }), incidentName(i), el("td", { text: labelText(i.labels) }),
        el("td", { text: i.count }), el("td", {}, timeEl(i.opened_at)), el("td", {}, button));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 6, text: "No open incident." })));
    fillRows($("incident-table").tBodies[0], rows);
  }

  async function showTimeline(id, focus) {
    state.incident = id;
    const result = await api("GET", `/incidents/${id}/timeline`);
    if (!result.ok) {
      fail(problem(result));
      return;
    }
    $("timeline-heading").textContent = `Timeline of incident ${id} (${result.data.status})`;
    const items = result.data.events.map((e) => {
      const item = el("li", { "data-kind": e.kind }, timeEl(e.at), el("span", { class: "kind", text: e.kind }), e.text);
      if (e.reasons && e.reasons.length) {
        item.append(el("ul", {}, ...e.reasons.map((r) => el("li", { text: r }))));
      }
      return item;
    });
    $("timeline").replaceChildren(...items);
    $("timeline-panel").hidden = false;
    if (focus) $("timeline-heading").focus();
  }

  // -- runs and logs ---------------------------------------------------------------------

  function renderRuns(runs) {
    const rows = runs.map((r) => {
      const button = el("button", {
        type: "button", class: "secondary", "data-key": "log-" + r.id,
        text: "Log", ariaLabel: `Log of run ${r.id}`,
      });
      button.addEventListener("click", () => showLog(r.id, true));
      const actions = el("td", {}, button);
      if (state.me && state.me.can_operate && (r.status === "queued" || r.status === "running")) {
        const cancel = el("button", {
          type: "button", class: "deny", "data-key": "cancel-" + r.id,
          text: "Cancel", ariaLabel: `Cancel run ${r.id}`,
        });
        cancel.addEventListener("click", () => cancelRun(r.id));
        actions.append(" ", cancel);
      }
      return el("tr", { "data-run": r.id, "data-status": r.status },
        el("td", { text: r.id }), el("td", { text: `${r.incident_id} ${r.incident_name || ""}` }),
        el("td", { text: r.runbook }), el("td", { text: r.target }),
        el("td", { class: `status status-${r.status}`, text: r.status }), el("td", { text: r.attempts }),
        el("td", {}, timeEl(r.finished_at)), actions);
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 8, text: "No run yet." })));
    fillRows($("run-table").tBodies[0], rows);
  }

  async function cancelRun(id) {
    // a native prompt: keyboard usable, and the runs table may redraw while it is open
    const answer = window.prompt(`Why cancel run ${id}? (recorded in the audit trail)`);
    if (answer === null) return;
    const reason = answer.trim();
    if (!reason) {
      fail("A reason is required.");
      return;
    }
    try {
      const result = await api("POST", `/runs/${id}/cancel`, { reason });
      if (result.ok) {
        say(result.data.status === "canceled" ? `Run ${id}: canceled.` : `Run ${id}: stopping.`);
        await refresh();
      } else {
        fail(`Run ${id}: ${problem(result)}`);
      }
    } catch (e) {
      fail(`Run ${id}: the dispatcher could not be reached.`);
    }
  }

  async function showLog(id, focus) {
    state.run = id;
    const result = await api("GET", `/runs/${id}/log`);
    if (!result.ok) {
      fail(problem(result));
      return;
    }
    $("log-heading").textContent = `Log of run ${id} (${result.data.status})`;
    $("log").textContent = result.data.log || "(no output recorded yet)";
    $("log-panel").hidden = false;
    if (focus) $("log-heading").focus();
  }

  // -- freeze -----------------------------------------------------------------------------

  function renderFreeze(data) {
    const active = data.windows.filter((w) => w.active && w.kind === "deny");
    const summary = $("freeze-summary");
    summary.className = active.length ? "frozen" : "";
    summary.textContent = active.length
      ? `Frozen: ${active.map((w) => `${w.name} (${w.scope}, until ${when(w.closes)})`).join("; ")}`
      : data.windows.length ? "No freeze window is active." : "The policy has no freeze window.";
    const rows = data.windows.map((w) =>
      el("tr", {}, el("th", { scope: "row", text: w.name }), el("td", { text: `${w.kind} window, ${w.active ? "open" : "closed"}` }),
        el("td", { text: w.scope }), el("td", { text: when(w.closes) }), el("td", { text: when(w.next_opens) })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 5, text: "No freeze window." })));
    fillRows($("freeze-table").tBodies[0], rows);
  }

  // -- report -----------------------------------------------------------------------------

  async function loadReport() {
    const result = await api("POST", "/ui/report-ticket");
    if (!result.ok) {
      fail(problem(result));
      return;
    }
    const frame = $("report-frame");
    frame.src = result.data.url;
    frame.hidden = false;
    say("Report loaded.");
  }

  // -- refresh loop -----------------------------------------------------------------------

  async function refresh() {
    const [approvals, incidents, runs, freeze] = await Promise.all([
      api("GET", "/approvals"),
      api("GET", "/incidents?status=open&limit=50"),
      api("GET", "/runs?limit=25"),
      api("GET", "/freeze"),
    ]);
    const results = [approvals, incidents, runs, freeze];
    if (results.some((r) => r.status === 401)) {
      signOut();
      fail("The token is no longer accepted: sign in again.");
      throw new Error("unauthorised");
    }
    const bad = results.find((r) => !r.ok);
    if (approvals.ok) renderApprovals(approvals.data.approvals);
    if (incidents.ok) renderIncidents(incidents.data.incidents);
    if (runs.ok) renderRuns(runs.data.runs);
    if (freeze.ok) renderFreeze(freeze.data);
    if (state.incident !== null) await showTimeline(state.incident, false);
    if (state.run !== null) await showLog(state.run, false);
    if (bad) throw new Error(problem(bad));
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    if (!state.me) return;
    if (state.polls >= MAX_POLLS) {
      $("refresh-state").textContent = "Auto-refresh paused after an hour; use Refresh now.";
      return;
    }
    state.timer = setTimeout(tick, delay);
  }

  async function tick() {
    if (document.hidden) return; // resumed by visibilitychange
    state.polls += 1;
    try {
      await refresh();
      state.failures = 0;
      $("refresh-state").textContent = `Auto-refresh on; updated ${new Date().toLocaleTimeString()}.`;
      schedule(POLL_MS);
    } catch (e) {
      if (!state.me) return;
      state.failures += 1;
      fail(`Refresh failed: ${e.message}`);
      schedule(Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** state.failures));
    }
  }

  function restart() {
    state.polls = 0;
    state.failures = 0;
    tick();
  }

  // -- wiring -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", async () => {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      try {
        if (await signIn(token)) {
          $("token").value = "";
          say(`Signed in as ${state.me.name || "anonymous"} (${state.me.console_role}).`);
          $("main").focus();
          restart();
        }
      } catch (e) {
        fail("The dispatcher could not be reached.");
      }
    });
    $("logout").addEventListener("click", signOut);
    $("refresh").addEventListener("click", restart);
    $("load-report").addEventListener("click", loadReport);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.me) restart();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        if (await signIn(saved)) restart();
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) {
        fail("The dispatcher could not be reached.");
      }
    } else {
      $("token").focus();
    }
  });
})();
