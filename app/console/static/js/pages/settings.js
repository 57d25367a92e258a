import * as api from "../api.js";
import {
  html, useState, useEffect, useLoad, useAction, usePrincipal, Problem, Missing, Text, Select, Check, Loading,
  PageTitle, StatusBadge, Tabs, formatTime, formatDate, useId,
} from "../ui.js";

const SECTIONS = [
  ["password-policy", "Password policy"],
  ["security", "Security"],
  ["signing", "Signing"],
  ["documents", "Documents"],
];
// Fields that may be null (then "not set") but are numbers when set.
const NUMERIC = new Set(["access_token_ttl_seconds", "refresh_token_ttl_seconds", "rate_limit_per_minute", "login_attempts_per_minute_per_ip", "max_upload_bytes", "content_retention_days", "page", "retention_days"]);
// Lists of numbers even when empty (an empty list of PEM certificates looks the same).
const NUMBER_LISTS = new Set(["box"]);
// Fields with a fixed set of values: chosen, not typed.
const CHOICES = {
  default_level: ["B-B", "B-T", "B-LT", "B-LTA"],
  hash_algorithm: ["sha256", "sha384", "sha512"],
};
const PEM_END = /(?<=-----END [A-Z0-9 ]+-----)\s*/;

// Names whose words alone would read wrongly.
const LABELS = { tsa_url: "TSA URL", access_token_ttl_seconds: "Access token lifetime (seconds)", refresh_token_ttl_seconds: "Refresh token lifetime (seconds)" };
const words = (key) => LABELS[key] ?? key.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
const numbers = (text) => text.split(",").map((x) => x.trim()).filter(Boolean).map(Number).filter((x) => !Number.isNaN(x));
const pems = (text) => text.split(PEM_END).map((x) => x.trim()).filter(Boolean);

/** A list edited as text: the text stays as typed (a trailing comma or newline too), the value is what it parses to. */
function ListText({ label, id, value, onChange, separator, parse, multiline }) {
  const [text, setText] = useState(() => value.join(separator));
  const input = (next) => {
    setText(next);
    onChange(parse(next));
  };
  if (multiline)
    return html`<label class="field"><span>${label}</span><textarea name=${id} value=${text} onInput=${(e) => input(e.target.value)}></textarea></label>`;
  return html`<${Text} label=${label} name=${id} value=${text} onInput=${input} />`;
}

/** An editor for one settings value, shaped by the value itself. */
function ValueEditor({ name, value, onChange, path }) {
  const label = words(name);
  const id = `${path}${name}`;
  if (typeof value === "boolean") return html`<${Check} label=${label} name=${id} checked=${value} onChange=${onChange} />`;
  if (CHOICES[name]) return html`<${Select} label=${label} name=${id} value=${value} onChange=${onChange} options=${CHOICES[name].map((v) => [v, v])} />`;
  if (typeof value === "number" || (value === null && NUMERIC.has(name)))
    return html`<${Text} label=${label} name=${id} type="number" value=${value ?? ""} hint=${value === null ? "empty: not set" : undefined} onInput=${(v) => onChange(v === "" ? null : Number(v))} />`;
  if (Array.isArray(value) && (NUMBER_LISTS.has(name) || (value.length > 0 && value.every((v) => typeof v === "number"))))
    return html`<${ListText} label=${`${label} (comma-separated)`} id=${id} value=${value} onChange=${onChange} separator=", " parse=${numbers} />`;
  if (Array.isArray(value))
    return html`<${ListText} label=${`${label} (PEM, one after another)`} id=${id} value=${value} onChange=${onChange} separator=${"\n"} parse=${pems} multiline />`;
  if (value && typeof value === "object")
    return html`<fieldset><legend>${label}</legend><div class="grid-form">
      ${Object.entries(value).map(([k, v]) => html`<${ValueEditor} name=${k} value=${v} path=${`${id}.`} onChange=${(next) => onChange({ ...value, [k]: next })} />`)}
    </div></fieldset>`;
  return html`<${Text} label=${label} name=${id} value=${value ?? ""} onInput=${(v) => onChange(v === "" ? null : v)} />`;
}

function SectionForm({ path, canWrite }) {
  const state = useLoad(() => api.call(path), [path]);
  const [values, setValues] = useState(null);
  const [saved, setSaved] = useState(false);
  const { error, busy, run } = useAction();
  useEffect(() => setValues(state.data), [state.data]);
  const save = (event) => {
    event.preventDefault();
    run(async () => {
      const { updated_at: _ignored, ...body } = values;
      setValues(await api.call(path, { method: "PUT", json: body }));
      setSaved(true);
    });
  };
  return html`<${Loading} state=${state}>${() =>
    values &&
    html`<form class="panel stack" onSubmit=${save}>
      <div class="grid-form">
        ${Object.entries(values)
          .filter(([k]) => k !== "updated_at")
          .map(([k, v]) => html`<${ValueEditor} name=${k} value=${v} path="" onChange=${(next) => { setSaved(false); setValues({ ...values, [k]: next }); }} />`)}
      </div>
      ${canWrite ? html`<div><button type="submit" disabled=${busy}>Save</button></div>` : html`<${Missing} entitlement="settings:write" what="Saving" />`}
      <${Problem} error=${error} />
      ${saved && html`<div class="success" role="status">Saved.</div>`}
    </form>`}<//>`;
}

function Allowance({ label, allowance }) {
  const id = useId("usage");
  return html`<div class="stack">
    <div id=${id}>${label}: <strong>${allowance.used}</strong> ${allowance.limit === null ? "(no limit)" : `of ${allowance.limit}`}</div>
    ${allowance.limit !== null && html`<meter aria-labelledby=${id} min="0" max=${allowance.limit} low=${allowance.limit * 0.8} high=${allowance.limit * 0.95} value=${allowance.used}></meter>`}
  </div>`;
}

export function LicenceUsage({ usage }) {
  return html`<div class="stack">
    <${Allowance} label="Users" allowance=${usage.users} />
    <${Allowance} label="Certificates" allowance=${usage.certificates} />
    <${Allowance} label="Signatures this month" allowance=${usage.signatures_this_month} />
    <${Allowance} label="Signatures in total" allowance=${usage.signatures_total} />
  </div>`;
}

function Licence() {
  const { has } = usePrincipal();
  const licence = useLoad(() => api.call("/license"), []);
  const usage = useLoad(() => api.call("/license/usage"), []);
  const [file, setFile] = useState(null);
  const [installed, setInstalled] = useState(null);
  const { error, busy, run } = useAction();
  const fileId = useId("licence");
  const install = (event) => {
    event.preventDefault();
    run(async () => {
      const form = new FormData();
      form.append("file", file, file.name);
      setInstalled(await api.call("/license", { method: "POST", form }));
      licence.reload();
      usage.reload();
    });
  };
  const download = () => run(async () => api.saveBlob(await api.call("/license/file"), "signvault.license"));
  return html`<section class="panel stack" aria-labelledby="licence-heading">
    <h2 id="licence-heading">Licence</h2>
    <${Loading} state=${licence}>${(l) => html`<div data-testid="licence-status"><dl class="facts">
      <dt>State</dt><dd><${StatusBadge} status=${l.state} /> ${l.detail}</dd>
      <dt>Licensee</dt><dd>${l.licensee || "—"}</dd>
      <dt>Licence id</dt><dd>${l.license_id || "—"}</dd>
      <dt>Valid</dt><dd>${formatDate(l.valid_from)} to ${formatDate(l.valid_until)}${l.days_left !== null ? ` (${l.days_left} days left)` : ""}</dd>
      <dt>Features</dt><dd>${l.features.join(", ") || "—"}</dd>
      <dt>Installed</dt><dd>${formatTime(l.installed_at)}${l.installed_by ? ` by ${l.installed_by}` : ""}</dd>
    </dl>
    ${l.installed_at && html`<button type="button" class="secondary" onClick=${download}>Download the installed licence file</button>`}</div>`}<//>
    <h3>Usage against the limits</h3>
    <${Loading} state=${usage}>${(u) => html`<${LicenceUsage} usage=${u} />`}<//>
    ${has("license:write")
      ? html`<form class="row" onSubmit=${install}>
          <label class="field" for=${fileId}><span>Licence file</span><input id=${fileId} type="file" required onChange=${(e) => setFile(e.target.files[0] || null)} /></label>
          <button type="submit" disabled=${!file || busy}>Install the licence</button>
        </form>`
      : html`<${Missing} entitlement="license:write" what="Installing a licence" />`}
    ${installed && html`<div class="success" role="status">Licence installed: ${installed.state}, ${installed.licensee}.</div>`}
    <${Problem} error=${error} />
  </section>`;
}

const EMPTY_PROFILE = { name: "", description: "", level: "", tsa_url: "", certify: "" };

function SigningProfiles({ canWrite }) {
  const list = useLoad(() => api.call("/signing-profiles", { query: { limit: 1000 } }), []);
  const [draft, setDraft] = useState(EMPTY_PROFILE);
  const { error, busy, run } = useAction();
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const create = (event) => {
    event.preventDefault();
    run(async () => {
      const body = { name: draft.name, description: draft.description };
      for (const key of ["level", "tsa_url", "certify"]) body[key] = draft[key] || null;
      await api.call("/signing-profiles", { method: "POST", json: body });
      setDraft(EMPTY_PROFILE);
      list.reload();
    });
  };
  const remove = (p) => run(async () => { await api.call(`/signing-profiles/${p.id}`, { method: "DELETE" }); list.reload(); });
  return html`<section class="panel stack" aria-labelledby="profiles-heading">
    <h2 id="profiles-heading">Signing profiles</h2>
    <${Loading} state=${list}>${(page) => page.data.length === 0 ? html`<p class="muted">No profiles yet.</p>` : html`<div class="table-wrap" tabindex="0"><table>
      <thead><tr><th scope="col">Name</th><th scope="col">Description</th><th scope="col">Level</th><th scope="col">TSA</th><th scope="col">Certification</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
      <tbody>${page.data.map((p) => html`<tr><td>${p.name}</td><td>${p.description}</td><td>${p.level || "—"}</td><td>${p.tsa_url || "—"}</td><td>${p.certify || "—"}</td>
        <td>${canWrite && html`<button type="button" class="secondary" onClick=${() => remove(p)} aria-label=${`Delete ${p.name}`}>Delete</button>`}</td></tr>`)}</tbody>
    </table></div>`}<//>
    ${canWrite &&
    html`<form class="stack" onSubmit=${create}>
      <h3>New profile</h3>
      <div class="grid-form">
        <${Text} label="Profile name" name="profile_name" value=${draft.name} onInput=${set("name")} required />
        <${Text} label="Profile description" name="profile_description" value=${draft.description} onInput=${set("description")} />
        <${Select} label="Profile level" name="profile_level" value=${draft.level} onChange=${set("level")} options=${[["", "not set"], ["B-B", "B-B"], ["B-T", "B-T"], ["B-LT", "B-LT"], ["B-LTA", "B-LTA"]]} />
        <${Text} label="Timestamp authority URL" name="profile_tsa_url" type="url" value=${draft.tsa_url} onInput=${set("tsa_url")} />
        <${Select} label="Certification" name="profile_certify" value=${draft.certify} onChange=${set("certify")} options=${[["", "not set"], ["none", "none"], ["no_changes", "no changes allowed"], ["form_filling", "form filling allowed"], ["annotations", "annotations allowed"]]} />
      </div>
      <div><button type="submit" disabled=${busy}>Create the profile</button></div>
    </form>`}
    <${Problem} error=${error} />
  </section>`;
}

export function SettingsPage() {
  const { has } = usePrincipal();
  const tabs = [["licence", "Licence"], ...SECTIONS, ["profiles", "Signing profiles"]];
  const [tab, setTab] = useState(has("license:read") ? "licence" : "password-policy");
  const needs = tab === "licence" ? "license:read" : "settings:read";
  let body;
  if (!has(needs)) body = html`<${Missing} entitlement=${needs} what="This section" />`;
  else if (tab === "licence") body = html`<${Licence} />`;
  else if (tab === "profiles") body = html`<${SigningProfiles} canWrite=${has("settings:write")} />`;
  else body = html`<${SectionForm} key=${tab} path=${`/settings/${tab}`} canWrite=${has("settings:write")} />`;
  return html`<${PageTitle}>Settings and licence<//>
    <${Tabs} label="Settings sections" tabs=${tabs} current=${tab} onChange=${setTab} />
    ${body}`;
}
