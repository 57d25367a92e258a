import * as api from "../api.js";
import {
  html, useState, useLoad, useAction, usePrincipal, Problem, Missing, Text, Select, Check, Field, Loading,
  PageTitle, StatusBadge, Badge, formatTime, formatBytes, Pager, filled, useDebounced, useId,
} from "../ui.js";
import { PagePreview } from "./preview.js";

const LEVELS = [["", "server default"], ["B-B", "PAdES B-B (basic)"], ["B-T", "PAdES B-T (with timestamp)"], ["B-LT", "PAdES B-LT (long-term)"], ["B-LTA", "PAdES B-LTA (archival)"]];

function UploadPanel() {
  const [file, setFile] = useState(null);
  const [meta, setMeta] = useState({ title: "", description: "", external_reference: "" });
  const { error, busy, run } = useAction();
  const fileId = useId("pdf");
  const upload = (event) => {
    event.preventDefault();
    run(async () => {
      const form = new FormData();
      form.append("file", file, file.name);
      for (const [key, value] of Object.entries(filled(meta))) form.append(key, value);
      const document = await api.call("/documents", { method: "POST", form });
      window.location.hash = `#/documents/${document.id}`;
    });
  };
  const set = (key) => (value) => setMeta({ ...meta, [key]: value });
  return html`<form class="panel stack" onSubmit=${upload} aria-labelledby="upload-heading">
    <h2 id="upload-heading">Upload a PDF</h2>
    <div class="grid-form">
      <label class="field" for=${fileId}><span>PDF file</span><input id=${fileId} type="file" accept="application/pdf,.pdf" required onChange=${(e) => setFile(e.target.files[0] || null)} /></label>
      <${Text} label="Title" name="title" value=${meta.title} onInput=${set("title")} />
      <${Text} label="Description" name="description" value=${meta.description} onInput=${set("description")} />
      <${Text} label="External reference" name="external_reference" value=${meta.external_reference} onInput=${set("external_reference")} />
    </div>
    <div><button type="submit" disabled=${!file || busy}>Upload</button></div>
    <${Problem} error=${error} />
  </form>`;
}

export function DocumentsPage() {
  const { has } = usePrincipal();
  const [filters, setFilters] = useState({ status: "", title_like: "", created_from: "", created_to: "", external_reference: "" });
  const [offset, setOffset] = useState(0);
  const searched = useDebounced(filters);
  const query = { ...filled(searched), offset };
  for (const key of ["created_from", "created_to"]) if (query[key]) query[key] = new Date(query[key]).toISOString();
  const list = useLoad(() => api.call("/documents", { query }), [JSON.stringify(searched), offset]);
  const set = (key) => (value) => { setOffset(0); setFilters({ ...filters, [key]: value }); };
  return html`<${PageTitle}>Documents<//>
    ${has("documents:write") ? html`<${UploadPanel} />` : html`<${Missing} entitlement="documents:write" what="Uploading" />`}
    <section class="panel stack" aria-labelledby="doc-list">
      <h2 id="doc-list">Documents</h2>
      <div class="grid-form">
        <${Text} label="Title contains" name="title_like" value=${filters.title_like} onInput=${set("title_like")} />
        <${Select} label="Status" name="status" value=${filters.status} onChange=${set("status")} options=${[["", "any"], ["uploaded", "uploaded"], ["signed", "signed"]]} />
        <${Text} label="Created from" name="created_from" type="datetime-local" value=${filters.created_from} onInput=${set("created_from")} />
        <${Text} label="Created to" name="created_to" type="datetime-local" value=${filters.created_to} onInput=${set("created_to")} />
        <${Text} label="External reference (exact)" name="filter_external_reference" value=${filters.external_reference} onInput=${set("external_reference")} />
      </div>
      <${Loading} state=${list}>${(page) => html`
        <div class="table-wrap" tabindex="0"><table>
          <caption class="muted">${page.total} document(s)</caption>
          <thead><tr><th scope="col">Title</th><th scope="col">Status</th><th scope="col">Pages</th><th scope="col">Size</th><th scope="col">Owner</th><th scope="col">Uploaded</th></tr></thead>
          <tbody>${page.data.map((d) => html`<tr>
            <td><a href=${`#/documents/${d.id}`}>${d.title || "(untitled)"}</a></td><td><${StatusBadge} status=${d.status} /></td>
            <td>${d.page_count}</td><td>${formatBytes(d.size)}</td><td>${d.owner_name}</td><td>${formatTime(d.created_at)}</td>
          </tr>`)}</tbody>
        </table></div>
        <${Pager} page=${page} onOffset=${setOffset} />`}<//>
    </section>`;
}

const yesNo = (flag, yes, no) => html`<${Badge} tone=${flag ? "ok" : "bad"}>${flag ? yes : no}<//>`;

/** A validation report, per signature, in words. */
export function VerificationReport({ report }) {
  return html`<section class="stack" data-testid="verification-report" aria-label="Verification report">
    <div class=${report.all_valid ? "success" : "problem"} role="status">
      ${report.signature_count === 0
        ? "This document has no signature."
        : report.all_valid
          ? `All ${report.signature_count} signature(s) are valid.`
          : `Not every signature is valid (${report.signature_count} in all).`}
      ${report.provenance.produced_here ? ` These exact bytes were produced by this server (version ${report.provenance.version}).` : ""}
    </div>
    ${report.signatures.map(
      (s, i) => html`<div class="card">
        <h3>Signature ${i + 1}: ${s.field_name} ${s.bottom_line ? html`<${Badge} tone="ok">valid<//>` : html`<${Badge} tone="bad">not valid<//>`}</h3>
        <p>${s.bottom_line
          ? `Signed by ${s.signer_subject || "an unknown signer"}${s.signing_time ? ` on ${formatTime(s.signing_time)}` : ""}; the document is intact since, and the signer's certificate is trusted.`
          : `This signature does not hold: ${s.problems.join("; ") || "see below"}.`}</p>
        <dl class="facts">
          <dt>Integrity</dt><dd>${yesNo(s.intact, "intact: the signed bytes are unchanged", "broken: the signed bytes were changed")}</dd>
          <dt>Signature</dt><dd>${yesNo(s.valid, "cryptographically valid", "invalid")}</dd>
          <dt>Trust</dt><dd>${yesNo(s.trusted, "the certificate chains to a trusted root", "the certificate is not trusted here")}</dd>
          <dt>Revocation</dt><dd>${s.revocation}</dd>
          <dt>Timestamp</dt><dd>${s.timestamp_valid === null ? "none" : s.timestamp_valid ? `valid, ${formatTime(s.timestamp_time)}` : "invalid"}</dd>
          <dt>Coverage</dt><dd>${s.coverage || "—"}</dd>
          <dt>Changes since</dt><dd>${s.modification_level || "—"}</dd>
          <dt>PAdES level reached</dt><dd>${s.pades_level || "—"}</dd>
          <dt>Certificate SHA-256</dt><dd class="mono">${s.signer_certificate_sha256 || "—"}</dd>
        </dl>
        ${s.problems.length > 0 && html`<ul>${s.problems.map((p) => html`<li>${p}</li>`)}</ul>`}
      </div>`,
    )}
  </section>`;
}

function SignPanel({ doc, onSigned }) {
  const { has } = usePrincipal();
  const certificates = useLoad(async () => (has("certificates:read") ? (await api.call("/certificates", { query: { status: "active", limit: 1000 } })).data : []), []);
  const profiles = useLoad(() => api.call("/signing-profiles/choices"), []);
  const [options, setOptions] = useState({ certificate_id: "", level: "", reason: "", location: "", profile: "" });
  const [visible, setVisible] = useState(false);
  const [pageNumber, setPageNumber] = useState(1);
  const [box, setBox] = useState(null);
  const [text, setText] = useState("");
  const [bytes, setBytes] = useState(null);
  const { error, busy, run, setError } = useAction();
  const set = (key) => (value) => setOptions({ ...options, [key]: value });

  const showPreview = (on) => {
    setVisible(on);
    if (on && !bytes) {
      run(async () => setBytes(await (await api.call(`/documents/${doc.id}/content`, { query: { version: "latest" } })).arrayBuffer()));
    }
  };
  const setCoordinate = (index) => (value) => {
    const next = [...(box || [0, 0, 0, 0])];
    next[index] = Number(value);
    setBox(next);
  };
  const sign = (event) => {
    event.preventDefault();
    run(async () => {
      const body = filled(options);
      if (visible) {
        if (!box) throw new Error("Draw the signature's box on the page first (or type its coordinates).");
        body.appearance = { page: pageNumber, box, ...(text ? { text } : {}) };
      }
      const signature = await api.call(`/documents/${doc.id}/sign`, { method: "POST", json: body });
      setBytes(null);
      setVisible(false);
      setBox(null);
      onSigned(signature);
    });
  };
  const certificateOptions = [["", "my default certificate"], ...(certificates.data || []).map((c) => [c.id, `${c.name} (${c.subject_cn || c.subject})`])];
  const profileOptions = [["", "none"], ...(profiles.data || []).map((p) => [p.name, p.description ? `${p.name}: ${p.description}` : p.name])];
  return html`<form class="panel stack" onSubmit=${sign} aria-labelledby="sign-heading">
    <h2 id="sign-heading">Sign</h2>
    <div class="grid-form">
      <${Select} label="Certificate" name="certificate_id" value=${options.certificate_id} onChange=${set("certificate_id")} options=${certificateOptions} />
      <${Select} label="Level" name="level" value=${options.level} onChange=${set("level")} options=${LEVELS} />
      <${Select} label="Signing profile" name="profile" value=${options.profile} onChange=${set("profile")} options=${profileOptions} />
      <${Text} label="Reason" name="reason" value=${options.reason} onInput=${set("reason")} />
      <${Text} label="Location" name="location" value=${options.location} onInput=${set("location")} />
    </div>
    <${Check} label="Visible signature: draw its box on the page" name="visible" checked=${visible} onChange=${showPreview} />
    ${visible &&
    html`<div class="stack">
      <div class="grid-form">
        <${Text} label="Page" name="page" type="number" min="1" max=${doc.page_count} value=${pageNumber} onInput=${(v) => { setPageNumber(Math.min(Math.max(1, Number(v) || 1), doc.page_count)); setBox(null); }} />
        <${Text} label="Text in the box (optional)" name="appearance_text" value=${text} onInput=${setText} hint="e.g. Signed by %(signer)s" />
      </div>
      ${bytes && html`<${PagePreview} bytes=${bytes} pageNumber=${pageNumber} box=${box} onBox=${setBox} onError=${setError} />`}
      <fieldset>
        <legend>The box in PDF points (from the page's bottom left)</legend>
        <div class="grid-form">
          ${["Left (x1)", "Bottom (y1)", "Right (x2)", "Top (y2)"].map(
            (label, i) => html`<${Text} label=${label} name=${`box_${i}`} type="number" step="0.01" value=${box ? box[i] : ""} onInput=${setCoordinate(i)} />`,
          )}
        </div>
      </fieldset>
    </div>`}
    <div><button type="submit" disabled=${busy}>Sign the document</button></div>
    <${Problem} error=${error || certificates.error} />
  </form>`;
}

export function DocumentPage({ params }) {
  const { has } = usePrincipal();
  const id = params.id;
  const doc = useLoad(() => api.call(`/documents/${id}`), [id]);
  const versions = useLoad(() => api.call(`/documents/${id}/versions`), [id]);
  const signatures = useLoad(() => api.call(`/documents/${id}/signatures`), [id]);
  const [report, setReport] = useState(null);
  const [signed, setSigned] = useState(null);
  const { error, busy, run } = useAction();
  const download = (version) =>
    run(async () => api.saveBlob(await api.call(`/documents/${id}/content`, { query: { version } }), `${doc.data.title || "document"}-${version}.pdf`));
  const trail = () =>
    run(async () => api.saveBlob(await api.call(`/documents/${id}/audit-trail`, { query: { format: "pdf" } }), `${doc.data.title || "document"}-audit-trail.pdf`));
  const verify = () => run(async () => setReport(await api.call(`/documents/${id}/verify`, { method: "POST" })));
  const afterSigning = (signature) => {
    setSigned(signature);
    setReport(null);
    doc.reload();
    versions.reload();
    signatures.reload();
  };
  return html`<p><a href="#/documents">← All documents</a></p>
    <${Loading} state=${doc}>${(d) => html`
      <${PageTitle}>${d.title || "(untitled)"} <${StatusBadge} status=${d.status} /><//>
      <div class="panel"><dl class="facts">
        <dt>Description</dt><dd>${d.description || "—"}</dd>
        <dt>External reference</dt><dd>${d.external_reference || "—"}</dd>
        <dt>Owner</dt><dd>${d.owner_name} (${d.owner_kind})</dd>
        <dt>Pages</dt><dd>${d.page_count}</dd>
        <dt>Size</dt><dd>${formatBytes(d.size)}</dd>
        <dt>SHA-256 (latest)</dt><dd class="mono">${d.sha256}</dd>
        <dt>Uploaded</dt><dd>${formatTime(d.created_at)}</dd>
      </dl>
      <div class="actions">
        <button type="button" class="secondary" onClick=${() => download("original")}>Download the original</button>
        <button type="button" class="secondary" onClick=${() => download("latest")}>Download the latest version</button>
        <button type="button" class="secondary" onClick=${trail}>Download the audit trail (sealed PDF)</button>
        ${has("documents:verify") && html`<button type="button" onClick=${verify} disabled=${busy}>Verify signatures</button>`}
      </div>
      <${Problem} error=${error} /></div>
      ${signed && html`<div class="success" role="status">Signed with ${signed.certificate_subject} (${signed.level}); version ${signed.version_number} made.</div>`}
      ${report && html`<${VerificationReport} report=${report} />`}
      ${has("documents:sign") ? html`<${SignPanel} doc=${d} onSigned=${afterSigning} />` : html`<${Missing} entitlement="documents:sign" what="Signing" />`}
    `}<//>
    <section class="panel stack" aria-labelledby="sig-heading">
      <h2 id="sig-heading">Signatures applied here</h2>
      <${Loading} state=${signatures}>${(rows) => rows.length === 0 ? html`<p class="muted">None yet.</p>` : html`<div class="table-wrap" tabindex="0"><table>
        <thead><tr><th scope="col">Version</th><th scope="col">Signer</th><th scope="col">Certificate</th><th scope="col">Level</th><th scope="col">Reason</th><th scope="col">Signed</th></tr></thead>
        <tbody>${rows.map((s) => html`<tr><td>${s.version_number}</td><td>${s.signer_name} (${s.signer_kind})</td><td>${s.certificate_subject}</td><td>${s.level}</td><td>${s.reason || "—"}</td><td>${formatTime(s.signing_time)}</td></tr>`)}</tbody>
      </table></div>`}<//>
    </section>
    <section class="panel stack" aria-labelledby="ver-heading">
      <h2 id="ver-heading">Versions</h2>
      <${Loading} state=${versions}>${(rows) => html`<div class="table-wrap" tabindex="0"><table>
        <thead><tr><th scope="col">Version</th><th scope="col">SHA-256</th><th scope="col">Size</th><th scope="col">Made</th><th scope="col"><span class="muted">Download</span></th></tr></thead>
        <tbody>${rows.map((v) => html`<tr><td>${v.number}</td><td class="mono">${v.sha256}</td><td>${formatBytes(v.size)}</td><td>${formatTime(v.created_at)}</td>
          <td><button type="button" class="secondary" onClick=${() => download(String(v.number))}>Download version ${v.number}</button></td></tr>`)}</tbody>
      </table></div>`}<//>
    </section>`;
}
