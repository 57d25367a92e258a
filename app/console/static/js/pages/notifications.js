import * as api from "../api.js";
import {
  html, useState, useEffect, useLoad, useAction, usePrincipal, Problem, Text, Select, Check, Loading,
  PageTitle, StatusBadge, Tabs, formatTime, Pager, filled,
} from "../ui.js";

const EVENTS = ["certificate.expiring", "certificate.expired", "document.signed", "signing.failed", "batch.completed", "user.locked", "login.attack_suspected", "license.expiring", "license.limit_reached", "audit.anchor"];
const EMPTY_RULE = { name: "", event: EVENTS[0], channel: "email", recipients: "", url: "", days_before: "", enabled: true };

function Rules({ canWrite }) {
  const list = useLoad(() => api.call("/notifications/rules", { query: { limit: 1000 } }), []);
  const [draft, setDraft] = useState(EMPTY_RULE);
  const [secret, setSecret] = useState(null);
  const { error, busy, run } = useAction();
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const create = (event) => {
    event.preventDefault();
    run(async () => {
      const body = { name: draft.name, event: draft.event, channel: draft.channel, enabled: draft.enabled };
      if (draft.channel === "email") body.recipients = draft.recipients.split(",").map((r) => r.trim()).filter(Boolean);
      else body.url = draft.url;
      if (draft.days_before) body.days_before = draft.days_before.split(",").map((d) => Number(d.trim()));
      const written = await api.call("/notifications/rules", { method: "POST", json: body });
      setSecret(written.secret || null);
      setDraft(EMPTY_RULE);
      list.reload();
    });
  };
  const toggle = (rule) => run(async () => { await api.call(`/notifications/rules/${rule.id}`, { method: "PATCH", json: { enabled: !rule.enabled } }); list.reload(); });
  const remove = (rule) => run(async () => { await api.call(`/notifications/rules/${rule.id}`, { method: "DELETE" }); list.reload(); });
  return html`<div class="stack">
    <${Loading} state=${list}>${(page) => html`<div class="table-wrap" tabindex="0"><table>
      <caption class="muted">${page.total} rule(s)</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Event</th><th scope="col">Channel</th><th scope="col">To</th><th scope="col">Enabled</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
      <tbody>${page.data.map((r) => html`<tr><td>${r.name}</td><td>${r.event}</td><td>${r.channel}</td><td>${r.channel === "email" ? (r.recipients || []).join(", ") : r.url}</td><td>${r.enabled ? "yes" : "no"}</td>
        <td>${canWrite && html`<div class="actions"><button type="button" class="secondary" onClick=${() => toggle(r)} aria-label=${`${r.enabled ? "Disable" : "Enable"} ${r.name}`}>${r.enabled ? "Disable" : "Enable"}</button>
          <button type="button" class="secondary" onClick=${() => remove(r)} aria-label=${`Delete ${r.name}`}>Delete</button></div>`}</td></tr>`)}</tbody>
    </table></div>`}<//>
    ${secret && html`<div class="secret" role="status">Webhook secret (shown once): <code class="mono">${secret}</code></div>`}
    ${canWrite &&
    html`<form class="panel stack" onSubmit=${create}>
      <h2>New rule</h2>
      <div class="grid-form">
        <${Text} label="Rule name" name="rule_name" value=${draft.name} onInput=${set("name")} required />
        <${Select} label="Event" name="rule_event" value=${draft.event} onChange=${set("event")} options=${EVENTS.map((e) => [e, e])} />
        <${Select} label="Channel" name="rule_channel" value=${draft.channel} onChange=${set("channel")} options=${[["email", "email"], ["webhook", "webhook (signed)"]]} />
        ${draft.channel === "email"
          ? html`<${Text} label="Recipients (comma-separated)" name="rule_recipients" value=${draft.recipients} onInput=${set("recipients")} required />`
          : html`<${Text} label="Webhook URL" name="rule_url" type="url" value=${draft.url} onInput=${set("url")} required />`}
        <${Text} label="Days before (expiry events, comma-separated)" name="rule_days" value=${draft.days_before} onInput=${set("days_before")} />
        <${Check} label="Enabled" name="rule_enabled" checked=${draft.enabled} onChange=${set("enabled")} />
      </div>
      <div><button type="submit" disabled=${busy}>Create the rule</button></div>
    </form>`}
    <${Problem} error=${error} />
  </div>`;
}

function Smtp({ canWrite }) {
  const current = useLoad(() => api.call("/notifications/smtp"), []);
  const [values, setValues] = useState(null);
  const [to, setTo] = useState("");
  const [message, setMessage] = useState(null);
  const { error, busy, run } = useAction();
  useEffect(() => current.data && setValues({ ...current.data, host: current.data.host || "", username: current.data.username || "", from_address: current.data.from_address || "", password: "" }), [current.data]);
  const set = (key) => (value) => setValues({ ...values, [key]: value });
  const save = (event) => {
    event.preventDefault();
    run(async () => {
      const { password_set: _set, password, ...rest } = values;
      const body = { ...rest, username: rest.username || null, tls_ca_pem: rest.tls_ca_pem || null, ...(password ? { password } : {}) };
      setValues({ ...(await api.call("/notifications/smtp", { method: "PUT", json: body })), password: "" });
      setMessage({ ok: true, text: "SMTP settings saved." });
    });
  };
  const test = () =>
    run(async () => {
      const result = await api.call("/notifications/smtp/test", { method: "POST", json: { to } });
      setMessage({ ok: result.delivered, text: result.detail });
    });
  return html`<${Loading} state=${current}>${() => values && html`<form class="panel stack" onSubmit=${save}>
    <div class="grid-form">
      <${Text} label="SMTP host" name="smtp_host" value=${values.host} onInput=${set("host")} required />
      <${Text} label="Port" name="smtp_port" type="number" value=${values.port} onInput=${(v) => set("port")(Number(v))} />
      <${Select} label="Security" name="smtp_security" value=${values.security} onChange=${set("security")} options=${[["none", "none"], ["starttls", "STARTTLS"], ["tls", "TLS"]]} />
      <${Text} label="SMTP username" name="smtp_username" value=${values.username} onInput=${set("username")} />
      <${Text} label=${values.password_set ? "SMTP password (set; type to replace)" : "SMTP password"} name="smtp_password" type="password" value=${values.password} onInput=${set("password")} autocomplete="new-password" />
      <${Text} label="From address" name="smtp_from" type="email" value=${values.from_address} onInput=${set("from_address")} required />
      <${Text} label="Timeout (seconds)" name="smtp_timeout" type="number" value=${values.timeout_seconds} onInput=${(v) => set("timeout_seconds")(Number(v))} />
      <${Check} label="Verify the server's TLS certificate" name="smtp_tls_verify" checked=${values.tls_verify} onChange=${set("tls_verify")} />
    </div>
    ${canWrite && html`<div><button type="submit" disabled=${busy}>Save the SMTP settings</button></div>
      <div class="row"><${Text} label="Send a test email to" name="smtp_test_to" type="email" value=${to} onInput=${setTo} />
      <button type="button" class="secondary" disabled=${!to || busy} onClick=${test}>Send test</button></div>`}
    ${message && html`<div class=${message.ok ? "success" : "problem"} role="status">${message.text}</div>`}
    <${Problem} error=${error} />
  </form>`}<//>`;
}

function Deliveries({ canWrite }) {
  const [status, setStatus] = useState("");
  const [offset, setOffset] = useState(0);
  const list = useLoad(() => api.call("/notifications/deliveries", { query: { ...filled({ status }), offset } }), [status, offset]);
  const { error, run } = useAction();
  const retry = (d) => run(async () => { await api.call(`/notifications/deliveries/${d.id}/retry`, { method: "POST" }); list.reload(); });
  return html`<div class="stack">
    <div class="row">
      <${Select} label="Delivery status" name="delivery_status" value=${status} onChange=${(v) => { setOffset(0); setStatus(v); }} options=${[["", "any"], ["pending", "pending"], ["sending", "sending"], ["delivered", "delivered"], ["failed", "failed"]]} />
      <button type="button" class="secondary" onClick=${list.reload}>Refresh the deliveries</button>
    </div>
    <${Problem} error=${error} />
    <${Loading} state=${list}>${(page) => html`<div class="table-wrap" tabindex="0"><table>
      <caption class="muted">${page.total} deliveries</caption>
      <thead><tr><th scope="col">Event</th><th scope="col">Channel</th><th scope="col">To</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Created</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
      <tbody>${page.data.map((d) => html`<tr><td>${d.event}</td><td>${d.channel}</td><td>${d.target}</td><td><${StatusBadge} status=${d.status} /></td><td>${d.attempts}</td><td>${d.last_error || "—"}</td><td>${formatTime(d.created_at)}</td>
        <td>${canWrite && d.status === "failed" && html`<button type="button" class="secondary" onClick=${() => retry(d)} aria-label=${`Retry delivery ${d.event} to ${d.target}`}>Retry</button>`}</td></tr>`)}</tbody>
    </table></div><${Pager} page=${page} onOffset=${setOffset} />`}<//>
  </div>`;
}

export function NotificationsPage() {
  const { has } = usePrincipal();
  const canWrite = has("notifications:write");
  const [tab, setTab] = useState("rules");
  return html`<${PageTitle}>Notifications<//>
    <${Tabs} label="Notifications" tabs=${[["rules", "Rules"], ["smtp", "SMTP settings"], ["deliveries", "Deliveries"]]} current=${tab} onChange=${setTab} />
    ${tab === "rules" && html`<${Rules} canWrite=${canWrite} />`}
    ${tab === "smtp" && html`<${Smtp} canWrite=${canWrite} />`}
    ${tab === "deliveries" && html`<${Deliveries} canWrite=${canWrite} />`}`;
}
