import * as api from "../api.js";
import {
  html, useState, useLoad, useAction, usePrincipal, Problem, Text, Select, Loading,
  PageTitle, StatusBadge, Secret, formatTime, Pager, filled, useDebounced,
} from "../ui.js";
import { EntitlementChecks } from "./users.js";

function CreateClient({ onCreated }) {
  const { me, has } = usePrincipal();
  const catalogue = useLoad(async () => (has("roles:read") ? api.call("/entitlements") : me.entitlements.map((name) => ({ name, description: "" }))), []);
  const [values, setValues] = useState({ name: "", description: "", entitlements: [] });
  const { error, busy, run } = useAction();
  const create = (event) => {
    event.preventDefault();
    run(async () => {
      onCreated(await api.call("/clients", { method: "POST", json: values }));
      setValues({ name: "", description: "", entitlements: [] });
    });
  };
  return html`<form class="panel stack" onSubmit=${create} aria-labelledby="new-client">
    <h2 id="new-client">New API client</h2>
    <div class="grid-form">
      <${Text} label="Client name" name="client_name" value=${values.name} onInput=${(v) => setValues({ ...values, name: v })} required />
      <${Text} label="Client description" name="client_description" value=${values.description} onInput=${(v) => setValues({ ...values, description: v })} />
    </div>
    ${catalogue.data && html`<${EntitlementChecks} legend="What the client may do (within your own entitlements)" catalogue=${catalogue.data.filter((e) => me.entitlements.includes(e.name))} chosen=${values.entitlements} onChange=${(e) => setValues({ ...values, entitlements: e })} />`}
    <div><button type="submit" disabled=${busy}>Create the client</button></div>
    <${Problem} error=${error || catalogue.error} />
  </form>`;
}

function ClientCertificates({ client }) {
  const { has } = usePrincipal();
  const certificates = useLoad(async () => (has("certificates:read") ? (await api.call("/certificates", { query: { status: "active", limit: 1000 } })).data : []), []);
  const [chosen, setChosen] = useState("");
  const [done, setDone] = useState("");
  const { error, busy, run } = useAction();
  const assign = (asDefault) =>
    run(async () => {
      const certificate = certificates.data.find((c) => c.id === chosen);
      if (!certificate.assignments.some((a) => a.client_id === client.id)) {
        await api.call(`/certificates/${chosen}/assignments`, { method: "POST", json: { client_id: client.id } });
      }
      if (asDefault) await api.call(`/clients/${client.id}/default-certificate`, { method: "PUT", json: { certificate_id: chosen } });
      setDone(asDefault ? `${certificate.name} assigned to ${client.name} and made its default.` : `${certificate.name} assigned to ${client.name}.`);
      certificates.reload();
    });
  if (!has("certificates:assign")) return null;
  return html`<div class="row">
    <${Select} label=${`Certificate for ${client.name}`} name=${`cert-${client.id}`} value=${chosen} onChange=${setChosen} options=${[["", "Choose…"], ...(certificates.data || []).map((c) => [c.id, c.name])]} />
    <button type="button" class="secondary" disabled=${!chosen || busy} onClick=${() => assign(false)}>Assign</button>
    <button type="button" class="secondary" disabled=${!chosen || busy} onClick=${() => assign(true)}>Assign as default</button>
    ${done && html`<span class="success" role="status">${done}</span>`}
    <${Problem} error=${error || certificates.error} />
  </div>`;
}

export function ClientsPage() {
  const { has } = usePrincipal();
  const canWrite = has("clients:write");
  const [filters, setFilters] = useState({ q: "", status: "" });
  const [offset, setOffset] = useState(0);
  const [secret, setSecret] = useState(null);
  const [open, setOpen] = useState(null);
  const searched = useDebounced(filters);
  const list = useLoad(() => api.call("/clients", { query: { ...filled(searched), offset } }), [JSON.stringify(searched), offset]);
  const { error, run } = useAction();
  const act = (client, action) =>
    run(async () => {
      const answer = await api.call(`/clients/${client.id}/${action}`, { method: "POST" });
      if (action === "rotate-secret") setSecret({ name: client.name, client_id: answer.client_id, client_secret: answer.client_secret });
      list.reload();
    });
  const set = (key) => (value) => { setOffset(0); setFilters({ ...filters, [key]: value }); };
  return html`<${PageTitle}>API clients<//>
    ${secret && html`<div class="stack"><p>Client <strong>${secret.name}</strong>: id <code class="mono">${secret.client_id}</code></p><${Secret} label="Client secret" value=${secret.client_secret} /></div>`}
    ${canWrite && html`<${CreateClient} onCreated=${(c) => { setSecret(c); list.reload(); }} />`}
    <section class="panel stack" aria-labelledby="client-list">
      <h2 id="client-list">Clients</h2>
      <div class="grid-form">
        <${Text} label="Search clients" name="client_q" value=${filters.q} onInput=${set("q")} />
        <${Select} label="Status" name="client_status" value=${filters.status} onChange=${set("status")} options=${[["", "any"], ["active", "active"], ["disabled", "disabled"]]} />
      </div>
      <${Problem} error=${error} />
      <${Loading} state=${list}>${(page) => html`<div class="table-wrap" tabindex="0"><table>
        <caption class="muted">${page.total} client(s)</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Client id</th><th scope="col">Entitlements</th><th scope="col">Status</th><th scope="col">Last used</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
        <tbody>${page.data.map((c) => html`<tr>
          <td>${c.name}<div class="muted">${c.description}</div></td><td class="mono">${c.client_id}</td><td>${c.entitlements.join(", ")}</td>
          <td><${StatusBadge} status=${c.status} /></td><td>${formatTime(c.last_used_at)}</td>
          <td><div class="actions">
            ${canWrite && html`<button type="button" class="secondary" onClick=${() => act(c, "rotate-secret")} aria-label=${`Rotate the secret of ${c.name}`}>Rotate the secret</button>
              ${c.status === "active"
                ? html`<button type="button" class="secondary" onClick=${() => act(c, "disable")} aria-label=${`Disable ${c.name}`}>Disable</button>`
                : html`<button type="button" class="secondary" onClick=${() => act(c, "enable")} aria-label=${`Enable ${c.name}`}>Enable</button>`}`}
            <button type="button" class="secondary" aria-expanded=${open === c.id ? "true" : "false"} onClick=${() => setOpen(open === c.id ? null : c.id)} aria-label=${`Certificates of ${c.name}`}>Certificates</button>
          </div>
          ${open === c.id && html`<${ClientCertificates} client=${c} />`}</td>
        </tr>`)}</tbody>
      </table></div><${Pager} page=${page} onOffset=${setOffset} />`}<//>
    </section>`;
}
