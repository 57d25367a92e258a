// Shared building blocks: Preact + htm (vendored UMD builds, loaded before this module).
const { h, render, createContext } = window.preact;
const hooks = window.preactHooks;

export const html = window.htm.bind(h);
export const { useState, useEffect, useRef, useContext, useCallback, useMemo } = hooks;
export { render, createContext };

/** The signed-in principal: `me` from /auth/me, and `has(entitlement)`. */
export const Principal = createContext(null);

export function usePrincipal() {
  return useContext(Principal);
}

let nextId = 0;
export function useId(prefix = "f") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++nextId}`;
  return ref.current;
}

/** Load `load()` now and whenever `deps` change; `reload()` loads again. */
export function useLoad(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, round]);
  return { ...state, reload: () => setRound((r) => r + 1) };
}

/** Run an action, keeping its error (a problem) and a busy flag for the form. */
export function useAction() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (action) => {
    setBusy(true);
    setError(null);
    try {
      return await action();
    } catch (caught) {
      setError(caught);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, run, setError };
}

function entitlementOf(error) {
  const match = /entitlement '([a-z]+:[a-z]+)'/.exec(error.problem?.detail || "");
  return match ? match[1] : null;
}

/** An API failure in words: the problem's detail, and for a 403 the entitlement missing. */
export function Problem({ error }) {
  if (!error) return null;
  if (!error.problem) {
    return html`<div class="problem" role="alert">${String(error.message || error)}</div>`;
  }
  const { title, detail, code, invalid_params: invalid } = error.problem;
  const missing = error.status === 403 ? entitlementOf(error) : null;
  return html`<div class="problem" role="alert">
    <strong>${title || "Refused"}:</strong> ${detail}
    ${missing && html`<div>You are missing the entitlement <code>${missing}</code>; ask an administrator for a role that has it.</div>`}
    ${invalid?.length > 0 &&
    html`<ul>
      ${invalid.map((p) => html`<li><code>${p.name}</code>: ${p.reason}</li>`)}
    </ul>`}
    ${code && html`<div class="muted">code: <code>${code}</code></div>`}
  </div>`;
}

/** Shown instead of a page or a part the principal may not use. */
export function Missing({ entitlement, what = "This page" }) {
  return html`<div class="notice" role="alert">
    ${what} needs the entitlement <code>${entitlement}</code>, which you do not have.
    Ask an administrator for a role that has it.
  </div>`;
}

export function Field({ label, hint, children }) {
  return html`<label class="field"><span>${label}</span>${children}${hint && html`<small class="muted">${hint}</small>`}</label>`;
}

export function Check({ label, checked, onChange, name }) {
  return html`<label class="check"><input type="checkbox" name=${name} checked=${checked} onChange=${(e) => onChange(e.target.checked)} /><span>${label}</span></label>`;
}

export function Select({ label, value, onChange, options, name, required }) {
  return html`<${Field} label=${label}>
    <select name=${name} value=${value} required=${required} onChange=${(e) => onChange(e.target.value)}>
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select>
  <//>`;
}

export function Text({ label, value, onInput, type = "text", name, required, hint, ...rest }) {
  return html`<${Field} label=${label} hint=${hint}>
    <input type=${type} name=${name} value=${value ?? ""} required=${required} onInput=${(e) => onInput(e.target.value)} ...${rest} />
  <//>`;
}

export function Badge({ tone = "neutral", children }) {
  return html`<span class=${`badge ${tone}`}>${children}</span>`;
}

export function Loading({ state, children }) {
  if (state.error) return html`<${Problem} error=${state.error} />`;
  if (state.loading && !state.data) return html`<p class="muted" aria-live="polite">Loading…</p>`;
  return children(state.data);
}

export function Secret({ label, value }) {
  const [copied, setCopied] = useState("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied("Copied.");
    } catch {
      setCopied("Copying was refused by the browser: select the text and copy it.");
    }
  };
  return html`<div class="secret" role="status">
    <div><strong>${label}</strong> (shown once: keep it now)</div>
    <div class="row"><code class="mono">${value}</code>
    <button type="button" class="secondary" onClick=${copy}>Copy ${label.toLowerCase()}</button></div>
    ${copied && html`<div>${copied}</div>`}
  </div>`;
}

export const formatTime = (value) => (value ? new Date(value).toLocaleString() : "—");
export const formatDate = (value) => (value ? new Date(value).toLocaleDateString() : "—");

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = bytes;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${n.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function daysUntil(value) {
  return Math.floor((new Date(value).getTime() - Date.now()) / 86_400_000);
}

export function ExpiryBadge({ notAfter }) {
  const days = daysUntil(notAfter);
  if (days < 0) return html`<${Badge} tone="bad">expired<//>`;
  if (days <= 30) return html`<${Badge} tone="warn">expires in ${days} days<//>`;
  return html`<${Badge} tone="ok">valid ${days} more days<//>`;
}

export function StatusBadge({ status }) {
  const tone = { active: "ok", valid: "ok", delivered: "ok", signed: "ok", success: "ok", uploaded: "neutral", evaluation: "warn", pending: "warn", sending: "warn", locked: "warn" }[status] || "bad";
  return html`<${Badge} tone=${tone}>${status}<//>`;
}

/** A page's heading, focused when the page opens (screen readers hear where they are). */
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => ref.current?.focus(), []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}

export function Tabs({ tabs, current, onChange, label }) {
  return html`<div class="tabs" role="tablist" aria-label=${label}>
    ${tabs.map(
      ([key, text]) =>
        html`<button type="button" role="tab" aria-selected=${current === key ? "true" : "false"} onClick=${() => onChange(key)}>${text}</button>`,
    )}
  </div>`;
}

/** Previous/next over a list answer `{offset, limit, count, total}`. */
export function Pager({ page, onOffset }) {
  if (!page || page.total <= page.limit) return null;
  const last = Math.min(page.offset + page.count, page.total);
  return html`<div class="row">
    <span class="muted">${page.offset + 1}–${last} of ${page.total}</span>
    <button type="button" class="secondary" disabled=${page.offset === 0} onClick=${() => onOffset(Math.max(0, page.offset - page.limit))}>Previous page</button>
    <button type="button" class="secondary" disabled=${last >= page.total} onClick=${() => onOffset(page.offset + page.limit)}>Next page</button>
  </div>`;
}

/** Keep only the filled-in fields of a form object (empty strings mean "not given"). */
export function filled(values) {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== "" && v !== null && v !== undefined));
}

/** `value`, once it has stopped changing for `ms` (a search box asks the server once, not per key). */
export function useDebounced(value, ms = 300) {
  const [settled, setSettled] = useState(value);
  const key = JSON.stringify(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [key]);
  return settled;
}
