import * as api from "../api.js";
import { html, useState, Problem, Text, PageTitle, useAction, usePrincipal } from "../ui.js";

export function PasswordChange({ onDone, forced, username }) {
  const [old, setOld] = useState("");
  const [fresh, setFresh] = useState("");
  const [again, setAgain] = useState("");
  const { error, busy, run, setError } = useAction();
  const submit = (event) => {
    event.preventDefault();
    if (fresh !== again) {
      setError(new Error("The new password and its repetition differ."));
      return;
    }
    run(async () => {
      await api.call("/auth/password", { method: "POST", json: { old_password: old, new_password: fresh } });
      await onDone(fresh);
    });
  };
  return html`<form class="stack panel" onSubmit=${submit}>
    ${forced && html`<div class="notice" role="status">Your password must be changed before you can go on${username ? `, ${username}` : ""}.</div>`}
    <${Text} label="Current password" name="old_password" type="password" value=${old} onInput=${setOld} required autocomplete="current-password" />
    <${Text} label="New password" name="new_password" type="password" value=${fresh} onInput=${setFresh} required autocomplete="new-password" />
    <${Text} label="New password again" name="new_password_again" type="password" value=${again} onInput=${setAgain} required autocomplete="new-password" />
    <${Problem} error=${error} />
    <button type="submit" disabled=${busy}>Change password</button>
  </form>`;
}

export function TwoFactorEnrolment({ onDone }) {
  const [enrolment, setEnrolment] = useState(null);
  const [code, setCode] = useState("");
  const { error, busy, run } = useAction();
  const start = () => run(async () => setEnrolment(await api.call("/auth/2fa/setup", { method: "POST" })));
  const confirm = (event) => {
    event.preventDefault();
    run(async () => {
      await api.call("/auth/2fa/enable", { method: "POST", json: { code } });
      await onDone();
    });
  };
  return html`<div class="panel stack">
    ${!enrolment && html`<button type="button" onClick=${start} disabled=${busy}>Set up two-factor authentication</button>`}
    ${enrolment &&
    html`<form class="stack" onSubmit=${confirm}>
      <p>Add this key to your authenticator app (or open the otpauth link on the phone that holds it), then type the code it shows.</p>
      <dl class="facts"><dt>Key</dt><dd class="mono">${enrolment.secret}</dd><dt>otpauth URI</dt><dd class="mono">${enrolment.otpauth_uri}</dd></dl>
      <${Text} label="Code from the app" name="code" value=${code} onInput=${setCode} required inputmode="numeric" autocomplete="one-time-code" />
      <button type="submit" disabled=${busy}>Confirm</button>
    </form>`}
    <${Problem} error=${error} />
  </div>`;
}

export function AccountPage() {
  const { me } = usePrincipal();
  const [changed, setChanged] = useState(false);
  const [enrolled, setEnrolled] = useState(me.two_factor_enabled);
  return html`<${PageTitle}>Your account<//>
    <div class="panel"><dl class="facts">
      <dt>Name</dt><dd>${me.name}</dd>
      <dt>Username</dt><dd>${me.username}</dd>
      <dt>Roles</dt><dd>${me.roles.map((r) => r.name).join(", ") || "none"}</dd>
      <dt>Entitlements</dt><dd>${me.entitlements.join(", ") || "none"}</dd>
    </dl></div>
    <h2>Change your password</h2>
    ${changed ? html`<div class="success" role="status">Password changed.</div>` : html`<${PasswordChange} onDone=${async (fresh) => { await api.login(me.username, fresh); setChanged(true); }} />`}
    <h2>Two-factor authentication</h2>
    ${enrolled ? html`<p>Two-factor authentication is on.</p>` : html`<${TwoFactorEnrolment} onDone=${() => setEnrolled(true)} />`}`;
}
