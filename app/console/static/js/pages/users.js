import * as api from "../api.js";
import {
  html, useState, useLoad, useAction, usePrincipal, Problem, Missing, Text, Select, Check, Loading,
  PageTitle, StatusBadge, Tabs, Secret, formatTime, Pager, filled, useDebounced,
} from "../ui.js";

/** The entitlement catalogue as checkboxes, each with its description from /entitlements. */
export function EntitlementChecks({ catalogue, chosen, onChange, legend }) {
  const toggle = (name, on) => onChange(on ? [...chosen, name] : chosen.filter((n) => n !== name));
  return html`<fieldset><legend>${legend}</legend><div class="checks">
    ${catalogue.map((e) => html`<${Check} label=${html`<code>${e.name}</code>: ${e.description}`} name=${`ent-${e.name}`} checked=${chosen.includes(e.name)} onChange=${(on) => toggle(e.name, on)} />`)}
  </div></fieldset>`;
}

// What each row action did, in words (reset-password shows the temporary password instead).
const DONE = {
  unlock: "unlocked, and the failed logins against the account are forgotten",
  lock: "locked until unlocked; their sessions have ended",
  disable: "disabled; their sessions have ended",
  enable: "enabled",
};

const EMPTY_USER = { username: "", full_name: "", email: "", password: "", department_id: "", role_ids: [] };

function UserForm({ user, roles, departments, onSaved, onCancel }) {
  const [values, setValues] = useState(user ? { ...user, department_id: user.department_id || "" } : EMPTY_USER);
  const { error, busy, run } = useAction();
  const set = (key) => (value) => setValues({ ...values, [key]: value });
  const save = (event) => {
    event.preventDefault();
    run(async () => {
      const common = { full_name: values.full_name, email: values.email || null, department_id: values.department_id || null, role_ids: values.role_ids };
      if (user) await api.call(`/users/${user.id}`, { method: "PATCH", json: common });
      else await api.call("/users", { method: "POST", json: { ...common, username: values.username, password: values.password } });
      onSaved();
    });
  };
  const toggleRole = (id, on) => set("role_ids")(on ? [...values.role_ids, id] : values.role_ids.filter((r) => r !== id));
  return html`<form class="panel stack" onSubmit=${save}>
    <h2>${user ? `Edit ${user.username}` : "New user"}</h2>
    <div class="grid-form">
      ${!user && html`<${Text} label="Username" name="new_username" value=${values.username} onInput=${set("username")} required />`}
      <${Text} label="Full name" name="full_name" value=${values.full_name} onInput=${set("full_name")} />
      <${Text} label="Email" name="email" type="email" value=${values.email} onInput=${set("email")} />
      ${!user && html`<${Text} label="Initial password" name="new_password" type="password" value=${values.password} onInput=${set("password")} required autocomplete="new-password" />`}
      <${Select} label="Department" name="department_id" value=${values.department_id} onChange=${set("department_id")} options=${[["", "none"], ...departments.map((d) => [d.id, d.name])]} />
    </div>
    <fieldset><legend>Roles</legend><div class="checks">
      ${roles.map((r) => html`<${Check} label=${`${r.name}: ${r.description}`} name=${`role-${r.id}`} checked=${values.role_ids.includes(r.id)} onChange=${(on) => toggleRole(r.id, on)} />`)}
    </div></fieldset>
    <div class="actions"><button type="submit" disabled=${busy}>${user ? "Save the user" : "Create the user"}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button></div>
    <${Problem} error=${error} />
  </form>`;
}

function Users() {
  const { has } = usePrincipal();
  const canWrite = has("users:write");
  const [filters, setFilters] = useState({ q: "", status: "" });
  const [offset, setOffset] = useState(0);
  const [editing, setEditing] = useState(null); // null, "new", or a user
  const [temporary, setTemporary] = useState(null);
  const searched = useDebounced(filters);
  const list = useLoad(() => api.call("/users", { query: { ...filled(searched), offset } }), [JSON.stringify(searched), offset]);
  const roles = useLoad(async () => (has("roles:read") ? (await api.call("/roles", { query: { limit: 1000 } })).data : []), []);
  const departments = useLoad(async () => (has("departments:read") ? (await api.call("/departments", { query: { limit: 1000 } })).data : []), []);
  const [done, setDone] = useState("");
  const { error, run } = useAction();
  const act = (user, action) =>
    run(async () => {
      setDone("");
      const answer = await api.call(`/users/${user.id}/${action}`, { method: "POST" });
      if (action === "reset-password") setTemporary({ username: user.username, password: answer.temporary_password });
      else setDone(`${user.username}: ${DONE[action]}.`);
      list.reload();
    });
  const set = (key) => (value) => { setOffset(0); setFilters({ ...filters, [key]: value }); };
  const departmentName = (id) => (departments.data || []).find((d) => d.id === id)?.name || "—";
  return html`<div class="stack">
    ${temporary && html`<${Secret} label=${`Temporary password of ${temporary.username}`} value=${temporary.password} />`}
    ${editing && roles.data && departments.data && html`<${UserForm} key=${editing.id || "new"} user=${editing === "new" ? null : editing} roles=${roles.data} departments=${departments.data}
      onSaved=${() => { setEditing(null); list.reload(); }} onCancel=${() => setEditing(null)} />`}
    <div class="grid-form">
      <${Text} label="Search users" name="user_q" value=${filters.q} onInput=${set("q")} />
      <${Select} label="Status" name="user_status" value=${filters.status} onChange=${set("status")} options=${[["", "any"], ["active", "active"], ["disabled", "disabled"], ["locked", "locked"]]} />
      ${canWrite && html`<div><button type="button" onClick=${() => setEditing("new")}>New user</button></div>`}
    </div>
    <${Problem} error=${error} />
    ${done && html`<div class="success" role="status">${done}</div>`}
    <${Loading} state=${list}>${(page) => html`<div class="table-wrap" tabindex="0"><table>
      <caption class="muted">${page.total} user(s)</caption>
      <thead><tr><th scope="col">Username</th><th scope="col">Name</th><th scope="col">Department</th><th scope="col">Roles</th><th scope="col">Status</th><th scope="col">Last login</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
      <tbody>${page.data.map((u) => html`<tr>
        <td>${u.username}</td><td>${u.full_name}</td><td>${departmentName(u.department_id)}</td><td>${u.roles.map((r) => r.name ?? r).join(", ")}</td>
        <td><${StatusBadge} status=${u.status} />${u.must_change_password ? " (password change due)" : ""}</td><td>${formatTime(u.last_login_at)}</td>
        <td>${canWrite && html`<div class="actions">
          <button type="button" class="secondary" onClick=${() => setEditing(u)} aria-label=${`Edit ${u.username}`}>Edit</button>
          ${u.status === "locked" && html`<button type="button" class="secondary" onClick=${() => act(u, "unlock")} aria-label=${`Unlock ${u.username}`}>Unlock</button>`}
          ${u.status === "active" &&
          html`<button type="button" class="secondary" onClick=${() => act(u, "unlock")} aria-label=${`Clear the failed logins of ${u.username}`}>Clear the failed logins</button>
            <button type="button" class="secondary" onClick=${() => act(u, "lock")} aria-label=${`Lock ${u.username}`}>Lock</button>`}
          <button type="button" class="secondary" onClick=${() => act(u, "reset-password")} aria-label=${`Reset the password of ${u.username}`}>Reset the password</button>
          ${u.status === "disabled"
            ? html`<button type="button" class="secondary" onClick=${() => act(u, "enable")} aria-label=${`Enable ${u.username}`}>Enable</button>`
            : html`<button type="button" class="secondary" onClick=${() => act(u, "disable")} aria-label=${`Disable ${u.username}`}>Disable</button>`}
        </div>`}</td>
      </tr>`)}</tbody>
    </table></div><${Pager} page=${page} onOffset=${setOffset} />`}<//>
  </div>`;
}

/** A list of named things (departments, roles) with create, edit and delete. */
function NamedList({ path, noun, withEntitlements, canWrite }) {
  const list = useLoad(() => api.call(path, { query: { limit: 1000 } }), [path]);
  const catalogue = useLoad(async () => (withEntitlements ? api.call("/entitlements") : []), []);
  const [editing, setEditing] = useState(null);
  const [values, setValues] = useState({ name: "", description: "", entitlements: [] });
  const { error, busy, run } = useAction();
  const edit = (item) => {
    setEditing(item || "new");
    setValues(item ? { name: item.name, description: item.description, entitlements: item.entitlements || [] } : { name: "", description: "", entitlements: [] });
  };
  const save = (event) => {
    event.preventDefault();
    run(async () => {
      const body = { name: values.name, description: values.description, ...(withEntitlements ? { entitlements: values.entitlements } : {}) };
      if (editing === "new") await api.call(path, { method: "POST", json: body });
      else await api.call(`${path}/${editing.id}`, { method: "PATCH", json: body });
      setEditing(null);
      list.reload();
    });
  };
  const remove = (item) => run(async () => { await api.call(`${path}/${item.id}`, { method: "DELETE" }); list.reload(); });
  return html`<div class="stack">
    ${canWrite && !editing && html`<div><button type="button" onClick=${() => edit(null)}>New ${noun}</button></div>`}
    ${editing &&
    html`<form class="panel stack" onSubmit=${save}>
      <h2>${editing === "new" ? `New ${noun}` : `Edit ${editing.name}`}</h2>
      <div class="grid-form">
        <${Text} label=${`Name of the ${noun}`} name=${`${noun}_name`} value=${values.name} onInput=${(v) => setValues({ ...values, name: v })} required />
        <${Text} label=${`Description of the ${noun}`} name=${`${noun}_description`} value=${values.description} onInput=${(v) => setValues({ ...values, description: v })} />
      </div>
      ${withEntitlements && catalogue.data && html`<${EntitlementChecks} legend="Entitlements" catalogue=${catalogue.data} chosen=${values.entitlements} onChange=${(e) => setValues({ ...values, entitlements: e })} />`}
      <div class="actions"><button type="submit" disabled=${busy}>Save the ${noun}</button><button type="button" class="secondary" onClick=${() => setEditing(null)}>Cancel</button></div>
    </form>`}
    <${Problem} error=${error || catalogue.error} />
    <${Loading} state=${list}>${(page) => html`<div class="table-wrap" tabindex="0"><table>
      <caption class="muted">${page.total} ${noun}(s)</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Description</th>${withEntitlements && html`<th scope="col">Entitlements</th>`}<th scope="col"><span class="muted">Actions</span></th></tr></thead>
      <tbody>${page.data.map((item) => html`<tr><td>${item.name}${item.is_builtin ? " (built-in)" : ""}</td><td>${item.description}</td>
        ${withEntitlements && html`<td>${item.entitlements.join(", ")}</td>`}
        <td>${canWrite && html`<div class="actions"><button type="button" class="secondary" onClick=${() => edit(item)} aria-label=${`Edit ${item.name}`}>Edit</button>
          ${!item.is_builtin && html`<button type="button" class="secondary" onClick=${() => remove(item)} aria-label=${`Delete ${item.name}`}>Delete</button>`}</div>`}</td></tr>`)}</tbody>
    </table></div>`}<//>
  </div>`;
}

export function UsersPage() {
  const { has } = usePrincipal();
  const [tab, setTab] = useState("users");
  const needs = { users: "users:read", departments: "departments:read", roles: "roles:read" }[tab];
  let body;
  if (!has(needs)) body = html`<${Missing} entitlement=${needs} what="This list" />`;
  else if (tab === "users") body = html`<${Users} />`;
  else if (tab === "departments") body = html`<${NamedList} key="d" path="/departments" noun="department" canWrite=${has("departments:write")} />`;
  else body = html`<${NamedList} key="r" path="/roles" noun="role" withEntitlements canWrite=${has("roles:write")} />`;
  return html`<${PageTitle}>Users, departments and roles<//>
    <${Tabs} label="Access control" tabs=${[["users", "Users"], ["departments", "Departments"], ["roles", "Roles"]]} current=${tab} onChange=${setTab} />
    ${body}`;
}
