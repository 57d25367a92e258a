import * as api from "../api.js";
import {
  html, useState, useLoad, useAction, usePrincipal, Problem, Missing, Text, Select, Field, Loading,
  PageTitle, ExpiryBadge, StatusBadge, formatTime, formatDate, Pager, filled, useDebounced, useId,
} from "../ui.js";

// Each refusal code of /certificates/inspect and import, in words.
export const REFUSALS = {
  not_pkcs12: "The file is neither a PKCS#12 (.p12/.pfx) file nor a certificate.",
  pkcs12_too_large: "The file is larger than the server accepts for a PKCS#12 file.",
  pkcs12_kdf_too_costly: "The file's password protection asks for more key-derivation work than the server allows; export it again with fewer iterations.",
  pkcs12_unsupported_protection: "The file is encrypted with an algorithm the server does not support; export it again with AES.",
  pkcs12_wrong_password: "The password does not open this file.",
  pkcs12_no_private_key: "The file holds no private key, so nothing could be signed with it.",
  pkcs12_no_certificate: "The file holds a key but no certificate for it.",
  key_certificate_mismatch: "The private key in the file does not belong to its certificate.",
  certificate_expired: "The certificate has expired.",
  certificate_not_yet_valid: "The certificate is not valid yet.",
  key_usage_not_signing: "The certificate's key usage does not allow signing (it needs digitalSignature or nonRepudiation).",
  unsupported_key_type: "The key is of a type the vault does not sign with.",
  invalid_certificate: "The certificate in the file cannot be read.",
  certificate_duplicate: "This certificate is already in the vault.",
};

function CertificateFacts({ cert }) {
  return html`<dl class="facts">
    <dt>Subject</dt><dd>${cert.subject}</dd>
    <dt>Issuer</dt><dd>${cert.issuer}</dd>
    <dt>Serial number</dt><dd class="mono">${cert.serial_number}</dd>
    <dt>Valid</dt><dd>${formatDate(cert.not_before)} to ${formatDate(cert.not_after)} <${ExpiryBadge} notAfter=${cert.not_after} /></dd>
    <dt>Key</dt><dd>${cert.key_algorithm} ${cert.key_size}${cert.key_curve ? ` (${cert.key_curve})` : ""}</dd>
    <dt>Key usage</dt><dd>${cert.key_usage.join(", ") || "—"}</dd>
    <dt>SHA-256 fingerprint</dt><dd class="mono">${cert.fingerprint_sha256}</dd>
    <dt>Chain</dt><dd>${cert.chain.length} certificate(s)</dd>
  </dl>`;
}

function ImportPanel({ onImported }) {
  const { has } = usePrincipal();
  const [file, setFile] = useState(null);
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [over, setOver] = useState(false);
  const [inspection, setInspection] = useState(null);
  const [imported, setImported] = useState(null);
  const { error, busy, run } = useAction();
  const fileId = useId("p12");

  const choose = (chosen) => {
    setFile(chosen || null);
    setInspection(null);
    setImported(null);
  };
  const form = () => {
    const data = new FormData();
    data.append("file", file, file.name);
    data.append("password", password);
    return data;
  };
  const inspect = () => run(async () => setInspection(await api.call("/certificates/inspect", { method: "POST", form: form() })));
  const store = () =>
    run(async () => {
      const data = form();
      if (name) data.append("name", name);
      const cert = await api.call("/certificates", { method: "POST", form: data });
      setImported(cert);
      setInspection(null);
      setFile(null);
      setPassword("");
      setName("");
      onImported(cert);
    });
  const drop = (event) => {
    event.preventDefault();
    setOver(false);
    choose(event.dataTransfer.files[0]);
  };
  return html`<section class="panel stack" aria-labelledby="import-heading">
    <h2 id="import-heading">Import a PKCS#12 file</h2>
    <div class=${over ? "dropzone over" : "dropzone"} data-testid="p12-dropzone"
      onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)} onDrop=${drop}>
      <p>Drop a <strong>.p12</strong> or <strong>.pfx</strong> file here, or choose one.</p>
      <label for=${fileId}>PKCS#12 file</label>
      <input id=${fileId} type="file" accept=".p12,.pfx,application/x-pkcs12" onChange=${(e) => choose(e.target.files[0])} />
      ${file && html`<p>Chosen: <strong>${file.name}</strong> (${file.size} bytes)</p>`}
    </div>
    <div class="grid-form">
      <${Text} label="File password" name="p12_password" type="password" value=${password} onInput=${setPassword} autocomplete="off" />
      <${Text} label="Name in the vault (optional)" name="certificate_name" value=${name} onInput=${setName} />
    </div>
    <div class="actions">
      <button type="button" disabled=${!file || busy} onClick=${inspect}>Inspect</button>
      ${has("certificates:write") && html`<button type="button" disabled=${!file || busy || (inspection && !inspection.importable)} onClick=${store}>Import into the vault</button>`}
    </div>
    <${Problem} error=${error} />
    ${error?.code && REFUSALS[error.code] && html`<p class="problem">${REFUSALS[error.code]}</p>`}
    ${inspection &&
    html`<div class="stack" data-testid="inspection">
      ${inspection.importable
        ? html`<div class="success" role="status">The vault would import this certificate.</div>`
        : html`<div class="problem" role="alert">The vault would refuse this file: ${REFUSALS[inspection.refusal_code] || inspection.refusal_detail} <span class="muted">(code <code>${inspection.refusal_code}</code>)</span></div>`}
      <${CertificateFacts} cert=${inspection} />
    </div>`}
    ${imported && html`<div class="success" role="status">Imported “${imported.name}”.</div>`}
  </section>`;
}

const READ_LIST = { user: "users:read", department: "departments:read", client: "clients:read" };

function targetOptions(kind, lists) {
  const rows = lists[kind] || [];
  const label = { user: (u) => `${u.full_name || u.username} (${u.username})`, department: (d) => d.name, client: (c) => `${c.name} (${c.client_id})` }[kind];
  return [["", "Choose…"], ...rows.map((r) => [r.id, label(r)])];
}

function Assignments({ cert, onChange }) {
  const { has } = usePrincipal();
  const canAssign = has("certificates:assign");
  const lists = useLoad(async () => {
    const get = async (kind, path) => (has(READ_LIST[kind]) ? (await api.call(path, { query: { limit: 1000 } })).data : []);
    return { user: await get("user", "/users"), department: await get("department", "/departments"), client: await get("client", "/clients") };
  }, []);
  const [kind, setKind] = useState("user");
  const [target, setTarget] = useState("");
  const { error, busy, run } = useAction();
  const [done, setDone] = useState("");
  const nameOf = (a) => {
    const data = lists.data || {};
    if (a.user_id) return `user ${(data.user || []).find((u) => u.id === a.user_id)?.username || a.user_id}`;
    if (a.client_id) return `API client ${(data.client || []).find((c) => c.id === a.client_id)?.name || a.client_id}`;
    return `department ${(data.department || []).find((d) => d.id === a.department_id)?.name || a.department_id}`;
  };
  const assign = (event) => {
    event.preventDefault();
    run(async () => {
      await api.call(`/certificates/${cert.id}/assignments`, { method: "POST", json: { [`${kind}_id`]: target } });
      setDone("Assigned.");
      setTarget("");
      onChange();
    });
  };
  const unassign = (a) => run(async () => { await api.call(`/certificates/${cert.id}/assignments/${a.id}`, { method: "DELETE" }); onChange(); });
  const makeDefault = (a) =>
    run(async () => {
      const path = a.user_id ? `/users/${a.user_id}/default-certificate` : `/clients/${a.client_id}/default-certificate`;
      await api.call(path, { method: "PUT", json: { certificate_id: cert.id } });
      setDone(`Now the default certificate of ${nameOf(a)}.`);
    });
  return html`<section class="stack" aria-label="Assignments">
    <h3>Who may sign with it</h3>
    ${cert.assignments.length === 0 && html`<p class="muted">Nobody yet.</p>`}
    <ul>
      ${cert.assignments.map(
        (a) => html`<li>${nameOf(a)}
          ${canAssign && html`<span class="actions">
            ${!a.department_id && html`<button type="button" class="secondary" onClick=${() => makeDefault(a)}>Make default for ${nameOf(a)}</button>`}
            <button type="button" class="secondary" onClick=${() => unassign(a)}>Remove ${nameOf(a)}</button>
          </span>`}</li>`,
      )}
    </ul>
    ${canAssign &&
    html`<form class="row" onSubmit=${assign}>
      <${Select} label="Assign to" name="assign_kind" value=${kind} onChange=${(k) => { setKind(k); setTarget(""); }} options=${[["user", "a user"], ["department", "a department"], ["client", "an API client"]]} />
      ${lists.data && has(READ_LIST[kind])
        ? html`<${Select} label=${`Which ${kind === "client" ? "API client" : kind}`} name="assign_target" value=${target} onChange=${setTarget} options=${targetOptions(kind, lists.data)} required />`
        : html`<${Text} label=${`The ${kind}'s id`} name="assign_target" value=${target} onInput=${setTarget} required />`}
      <button type="submit" disabled=${busy || !target}>Assign</button>
    </form>`}
    <${Problem} error=${error || lists.error} />
    ${done && html`<div class="success" role="status">${done}</div>`}
  </section>`;
}

function CertificateDetails({ id, onChange, onClose }) {
  const { has } = usePrincipal();
  const state = useLoad(() => api.call(`/certificates/${id}`), [id]);
  const { error, busy, run } = useAction();
  const [revoking, setRevoking] = useState(false);
  const [reason, setReason] = useState("");
  const act = (path, json) =>
    run(async () => {
      await api.call(`/certificates/${id}/${path}`, { method: "POST", json });
      setRevoking(false);
      state.reload();
      onChange();
    });
  const chain = () =>
    run(async () => {
      const pem = await api.call(`/certificates/${id}/chain`);
      api.saveBlob(pem, `${state.data.name || "certificate"}-chain.pem`);
    });
  return html`<section class="panel stack" aria-labelledby="cert-details">
    <${Loading} state=${state}>${(cert) => html`
      <h2 id="cert-details">${cert.name} <${StatusBadge} status=${cert.status} /></h2>
      <${CertificateFacts} cert=${cert} />
      <p class="muted">Last used ${formatTime(cert.last_used_at)}. Key store: ${cert.key_store}.</p>
      <div class="actions">
        <button type="button" class="secondary" onClick=${chain}>Download the chain (PEM)</button>
        ${has("certificates:write") && cert.status === "active" && html`<button type="button" class="secondary" onClick=${() => act("disable")}>Disable</button>`}
        ${has("certificates:write") && cert.status === "disabled" && html`<button type="button" class="secondary" onClick=${() => act("enable")}>Enable</button>`}
        ${has("certificates:write") && !["revoked", "deleted"].includes(cert.status) && html`<button type="button" class="danger" onClick=${() => setRevoking(!revoking)}>Revoke…</button>`}
        <button type="button" class="secondary" onClick=${onClose}>Close</button>
      </div>
      ${revoking && html`<div class="notice stack">
        <p>Revoking is final: the certificate can never sign here again.</p>
        <${Text} label="Reason (optional)" name="revocation_reason" value=${reason} onInput=${setReason} />
        <button type="button" class="danger" disabled=${busy} onClick=${() => act("revoke", { reason: reason || null })}>Revoke for good</button>
      </div>`}
      <${Problem} error=${error} />
      <${Assignments} cert=${cert} onChange=${() => { state.reload(); onChange(); }} />
    `}<//>
  </section>`;
}

export function CertificatesPage() {
  const { has } = usePrincipal();
  const [filters, setFilters] = useState({ status: "", q: "", expiring_within_days: "" });
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState(null);
  const searched = useDebounced(filters);
  const list = useLoad(() => api.call("/certificates", { query: { ...filled(searched), offset, sort: "-created_at" } }), [JSON.stringify(searched), offset]);
  const set = (key) => (value) => { setOffset(0); setFilters({ ...filters, [key]: value }); };
  return html`<${PageTitle}>Certificates<//>
    ${has("certificates:write") ? html`<${ImportPanel} onImported=${(cert) => { list.reload(); setSelected(cert.id); }} />` : html`<${Missing} entitlement="certificates:write" what="Importing" />`}
    ${selected && html`<${CertificateDetails} id=${selected} onChange=${list.reload} onClose=${() => setSelected(null)} />`}
    <section class="panel stack" aria-labelledby="cert-list">
      <h2 id="cert-list">In the vault</h2>
      <div class="grid-form">
        <${Text} label="Search" name="q" value=${filters.q} onInput=${set("q")} />
        <${Select} label="Status" name="status" value=${filters.status} onChange=${set("status")} options=${[["", "any"], ["active", "active"], ["disabled", "disabled"], ["expired", "expired"], ["revoked", "revoked"]]} />
        <${Text} label="Expiring within (days)" name="expiring_within_days" type="number" min="0" value=${filters.expiring_within_days} onInput=${set("expiring_within_days")} />
      </div>
      <${Loading} state=${list}>${(page) => html`
        <div class="table-wrap" tabindex="0"><table>
          <caption class="muted">${page.total} certificate(s)</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Subject</th><th scope="col">Expiry</th><th scope="col">Status</th><th scope="col">Assigned</th><th scope="col"><span class="muted">Open</span></th></tr></thead>
          <tbody>${page.data.map((c) => html`<tr class=${selected === c.id ? "selected" : ""}>
            <td>${c.name}</td><td>${c.subject_cn || c.subject}</td>
            <td>${formatDate(c.not_after)} <${ExpiryBadge} notAfter=${c.not_after} /></td>
            <td><${StatusBadge} status=${c.status} /></td><td>${c.assignments.length}</td>
            <td><button type="button" class="secondary" onClick=${() => setSelected(c.id)} aria-label=${`Details of ${c.name}`}>Details</button></td>
          </tr>`)}</tbody>
        </table></div>
        <${Pager} page=${page} onOffset=${setOffset} />`}<//>
    </section>`;
}
