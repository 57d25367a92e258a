import * as api from "../api.js";
import {
  html, useState, useLoad, useAction, usePrincipal, Problem, Missing, Text, Select, Loading,
  PageTitle, StatusBadge, formatTime, Pager, filled,
} from "../ui.js";

const EMPTY = { action: "", actor_kind: "", actor_id: "", resource_type: "", resource_id: "", outcome: "", ip: "", from: "", to: "" };

function query(filters) {
  const q = filled(filters);
  for (const key of ["from", "to"]) if (q[key]) q[key] = new Date(q[key]).toISOString();
  return q;
}

function EntryDetails({ id, onClose }) {
  const entry = useLoad(() => api.call(`/audit-logs/${id}`), [id]);
  return html`<section class="panel stack" aria-labelledby="entry-heading">
    <${Loading} state=${entry}>${(e) => html`
      <h2 id="entry-heading">Entry ${e.seq}: ${e.action}</h2>
      <dl class="facts">
        <dt>When</dt><dd>${formatTime(e.occurred_at)}</dd>
        <dt>Actor</dt><dd>${e.actor_name || "—"} (${e.actor_kind}${e.actor_id ? `, ${e.actor_id}` : ""})</dd>
        <dt>Resource</dt><dd>${e.resource_type || "—"} ${e.resource_id || ""}</dd>
        <dt>Outcome</dt><dd><${StatusBadge} status=${e.outcome} /></dd>
        <dt>Address</dt><dd>${e.ip || "—"} (peer ${e.peer_ip || "—"})</dd>
        <dt>User agent</dt><dd>${e.user_agent || "—"}</dd>
        <dt>Request id</dt><dd class="mono">${e.request_id || "—"}</dd>
        <dt>Hash</dt><dd class="mono">${e.hash}</dd>
        <dt>Previous hash</dt><dd class="mono">${e.prev_hash}</dd>
      </dl>
      <h3>Details</h3>
      <pre class="mono" tabindex="0" aria-label="Details as JSON">${JSON.stringify(e.details, null, 2)}</pre>
      <div><button type="button" class="secondary" onClick=${onClose}>Close the entry</button></div>`}<//>
  </section>`;
}

function ChainCheck() {
  const [anchor, setAnchor] = useState("");
  const [result, setResult] = useState(null);
  const { error, busy, run } = useAction();
  const verify = (event) => {
    event.preventDefault();
    run(async () => setResult(await api.call("/audit-logs/verify", { query: { anchor: anchor.trim() } })));
  };
  return html`<form class="panel stack" onSubmit=${verify} aria-labelledby="chain-heading">
    <h2 id="chain-heading">Verify the chain</h2>
    <${Text} label="Anchor kept outside the server (optional: its JSON or base64url)" name="anchor" value=${anchor} onInput=${setAnchor} />
    <div><button type="submit" disabled=${busy}>Verify the chain</button></div>
    <${Problem} error=${error} />
    ${result &&
    html`<div class=${result.intact && (!result.anchor || result.anchor.intact) ? "success" : "problem"} role="status" data-testid="chain-result">
      ${result.intact
        ? `The chain is intact: ${result.checked} entries checked (seq ${result.first_seq ?? "—"} to ${result.last_seq ?? "—"}), head at ${result.head_seq}.`
        : `The chain is broken at entry ${result.broken?.seq}: ${result.broken?.reason}.`}
      ${result.checkpoint && ` It starts after the retention checkpoint at seq ${result.checkpoint.through_seq}.`}
      ${result.anchor &&
      (result.anchor.intact
        ? ` The anchor of seq ${result.anchor.seq} matches (${result.anchor.status}).`
        : ` The anchor does not match: ${result.anchor.reason || result.anchor.status}${result.anchor.missing_from_seq ? ` (entries ${result.anchor.missing_from_seq} to ${result.anchor.missing_to_seq} are missing)` : ""}.`)}
      Verified ${formatTime(result.verified_at)}.
    </div>`}
  </form>`;
}

export function AuditPage() {
  const { has } = usePrincipal();
  const [draft, setDraft] = useState(EMPTY);
  const [filters, setFilters] = useState(EMPTY);
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState(null);
  const { error, busy, run } = useAction();
  const list = useLoad(() => api.call("/audit-logs", { query: { ...query(filters), offset, limit: 50 } }), [JSON.stringify(filters), offset]);
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const search = (event) => {
    event.preventDefault();
    setOffset(0);
    setFilters(draft);
  };
  const exportAs = (format) =>
    run(async () => api.saveBlob(await api.call("/audit-logs/export", { query: { ...query(filters), format } }), `audit.${format}`));
  return html`<${PageTitle}>Audit log<//>
    <form class="panel stack" onSubmit=${search} aria-labelledby="search-heading">
      <h2 id="search-heading">Search</h2>
      <div class="grid-form">
        <${Text} label="Action (exact, or a prefix ending in .)" name="action" value=${draft.action} onInput=${set("action")} />
        <${Select} label="Actor kind" name="actor_kind" value=${draft.actor_kind} onChange=${set("actor_kind")} options=${[["", "any"], ["user", "user"], ["client", "API client"], ["system", "system"], ["anonymous", "anonymous"]]} />
        <${Text} label="Actor id" name="actor_id" value=${draft.actor_id} onInput=${set("actor_id")} />
        <${Text} label="Resource type" name="resource_type" value=${draft.resource_type} onInput=${set("resource_type")} />
        <${Text} label="Resource id" name="resource_id" value=${draft.resource_id} onInput=${set("resource_id")} />
        <${Select} label="Outcome" name="outcome" value=${draft.outcome} onChange=${set("outcome")} options=${[["", "any"], ["success", "success"], ["failure", "failure"], ["denied", "denied"]]} />
        <${Text} label="IP address" name="ip" value=${draft.ip} onInput=${set("ip")} />
        <${Text} label="From" name="from" type="datetime-local" value=${draft.from} onInput=${set("from")} />
        <${Text} label="To" name="to" type="datetime-local" value=${draft.to} onInput=${set("to")} />
      </div>
      <div class="actions">
        <button type="submit">Search the log</button>
        <button type="button" class="secondary" onClick=${() => { setDraft(EMPTY); setFilters(EMPTY); setOffset(0); }}>Clear the filters</button>
        ${has("audit:export")
          ? html`<button type="button" class="secondary" disabled=${busy} onClick=${() => exportAs("csv")}>Export as CSV</button>
                 <button type="button" class="secondary" disabled=${busy} onClick=${() => exportAs("jsonl")}>Export as JSON Lines</button>`
          : html`<span class="muted">Exporting needs <code>audit:export</code>.</span>`}
      </div>
      <${Problem} error=${error} />
    </form>
    ${selected && html`<${EntryDetails} id=${selected} onClose=${() => setSelected(null)} />`}
    <section class="panel stack" aria-labelledby="results-heading">
      <h2 id="results-heading">Entries</h2>
      <${Loading} state=${list}>${(page) => html`
        <div class="table-wrap" tabindex="0"><table data-testid="audit-results">
          <caption class="muted">${page.total} matching entries</caption>
          <thead><tr><th scope="col">Seq</th><th scope="col">When</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Resource</th><th scope="col">Outcome</th><th scope="col"><span class="muted">Open</span></th></tr></thead>
          <tbody>${page.data.map((e) => html`<tr class=${selected === e.id ? "selected" : ""}>
            <td>${e.seq}</td><td>${formatTime(e.occurred_at)}</td><td>${e.action}</td><td>${e.actor_name || e.actor_kind}</td>
            <td>${e.resource_type || "—"}</td><td><${StatusBadge} status=${e.outcome} /></td>
            <td><button type="button" class="secondary" onClick=${() => setSelected(e.id)} aria-label=${`Details of entry ${e.seq}`}>Details</button></td>
          </tr>`)}</tbody>
        </table></div>
        <${Pager} page=${page} onOffset=${setOffset} />`}<//>
    </section>
    <${ChainCheck} />`;
}
