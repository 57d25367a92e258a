import * as api from "../api.js";
import { html, useLoad, usePrincipal, Missing, Loading, PageTitle, StatusBadge, ExpiryBadge, formatTime, formatDate } from "../ui.js";
import { LicenceUsage } from "./settings.js";

/** Signatures per day as an SVG bar chart, with the figures as a table for screen readers. */
export function DailyChart({ buckets }) {
  const width = 600;
  const height = 160;
  const bottom = 20;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const step = width / buckets.length;
  return html`<figure>
    <svg class="chart" viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${`Signatures per day over the last ${buckets.length} days: ${buckets.reduce((n, b) => n + b.count, 0)} in all, at most ${max} a day`}>
      <line x1="0" x2=${width} y1=${height - bottom} y2=${height - bottom} />
      ${buckets.map((b, i) => {
        const h = ((height - bottom - 10) * b.count) / max;
        return html`<rect class="bar" x=${i * step + 1} y=${height - bottom - h} width=${Math.max(1, step - 2)} height=${h}><title>${b.key}: ${b.count}</title></rect>`;
      })}
      <text x="0" y=${height - 5}>${buckets[0]?.key}</text>
      <text x=${width} y=${height - 5} text-anchor="end">${buckets[buckets.length - 1]?.key}</text>
      <text x="2" y="10">${max}</text>
    </svg>
    <figcaption class="muted">Signatures per UTC day, the last 30 days.</figcaption>
  </figure>`;
}

function Card({ title, entitlement, children }) {
  const { has } = usePrincipal();
  return html`<section class="card" aria-label=${title}>
    <h2>${title}</h2>
    ${entitlement && !has(entitlement) ? html`<${Missing} entitlement=${entitlement} what="This figure" />` : children()}
  </section>`;
}

const optional = (allowed, load) => (allowed ? load() : Promise.resolve(null));

export function DashboardPage() {
  const { has } = usePrincipal();
  const now = new Date();
  const from = new Date(now.getTime() - 29 * 86_400_000);
  from.setUTCHours(0, 0, 0, 0);
  const usage = useLoad(() => optional(has("license:read"), () => api.call("/license/usage")), []);
  const expiring = useLoad(() => optional(has("certificates:read"), () => api.call("/certificates/expiring", { query: { days: 30 } })), []);
  const daily = useLoad(() => optional(has("reports:read"), () => api.call("/reports/signatures", { query: { group_by: "day", from: from.toISOString(), to: now.toISOString() } })), []);
  const verified = useLoad(() => optional(has("audit:read"), () => api.call("/audit-logs", { query: { action: "audit.verified", limit: 1 } })), []);
  const failing = useLoad(() => optional(has("notifications:read"), () => api.call("/notifications/deliveries", { query: { status: "failed", limit: 5 } })), []);
  // /ready is the server's public readiness probe: the database and the blob store.
  const health = useLoad(async () => {
    const response = await fetch("/ready", { credentials: "omit" });
    return { ready: response.ok, ...(await response.json()) };
  }, []);
  return html`<${PageTitle}>Dashboard<//>
    <div class="cards">
      <${Card} title="Licence" entitlement="license:read">${() => html`<${Loading} state=${usage}>${(u) => u && html`
        <p>State: <${StatusBadge} status=${u.state} /> (period ${u.period})</p><${LicenceUsage} usage=${u} />`}<//>`}<//>
      <${Card} title="Certificates expiring within 30 days" entitlement="certificates:read">${() => html`<${Loading} state=${expiring}>${(rows) => rows &&
        (rows.length === 0 ? html`<p>None.</p>` : html`<ul>${rows.map((c) => html`<li>${c.name}: ${formatDate(c.not_after)} <${ExpiryBadge} notAfter=${c.not_after} /></li>`)}</ul>`)}<//>`}<//>
      <${Card} title="Signatures per day" entitlement="reports:read">${() => html`<${Loading} state=${daily}>${(r) => r && html`<p>${r.total} in the last 30 days.</p><${DailyChart} buckets=${r.buckets} />`}<//>`}<//>
      <${Card} title="Audit chain" entitlement="audit:read">${() => html`<${Loading} state=${verified}>${(page) => {
        const last = page?.data[0];
        if (!last) return html`<p>Never verified yet. <a href="#/audit">Verify it now</a>.</p>`;
        const intact = last.details?.intact;
        return html`<p>Last verified ${formatTime(last.occurred_at)} by ${last.actor_name || last.actor_kind}:
          ${intact === false ? html`<span class="badge bad">broken</span>` : intact === true ? html`<span class="badge ok">intact</span>` : last.outcome}.</p>
          <p><a href="#/audit">Open the audit log</a></p>`;
      }}<//>`}<//>
      <${Card} title="Failing notification deliveries" entitlement="notifications:read">${() => html`<${Loading} state=${failing}>${(page) => page &&
        (page.total === 0 ? html`<p>None.</p>` : html`<p>${page.total} failed.</p><ul>${page.data.map((d) => html`<li>${d.event} to ${d.target}: ${d.last_error || "failed"}</li>`)}</ul><p><a href="#/notifications">Retry them</a></p>`)}<//>`}<//>
      <${Card} title="Health">${() => html`<${Loading} state=${health}>${(r) => html`
        <p>${r.ready ? html`<span class="badge ok">ready</span> The database and the storage answer.` : html`<span class="badge bad">not ready</span> ${r.detail}`}</p>
        <dl class="facts">${Object.entries(r.checks || {}).map(([name, value]) => html`<dt>${name}</dt><dd>${typeof value === "object" ? JSON.stringify(value) : String(value)}</dd>`)}</dl>`}<//>`}<//>
    </div>`;
}
