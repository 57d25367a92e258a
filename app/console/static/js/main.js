import * as api from "./api.js";
import { html, render, useState, useEffect, Principal, Problem, Missing, Text, PageTitle, useAction } from "./ui.js";
import { PAGES, pageFor } from "./pages/index.js";
import { PasswordChange, TwoFactorEnrolment } from "./pages/account.js";

function LoginForm({ onDone, reason }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [totp, setTotp] = useState("");
  const [needsTotp, setNeedsTotp] = useState(false);
  const { error, busy, run } = useAction();
  const submit = (event) => {
    event.preventDefault();
    run(async () => {
      try {
        await api.login(username, password, needsTotp ? totp : undefined);
      } catch (caught) {
        if (caught.code === "totp_required" || caught.code === "invalid_totp") setNeedsTotp(true);
        throw caught;
      }
      await onDone({ username, password });
    });
  };
  return html`<main class="login">
    <${PageTitle}>SignVault console<//>
    ${reason && html`<div class="notice" role="status">${reason}</div>`}
    <form class="stack" onSubmit=${submit}>
      <${Text} label="Username" name="username" value=${username} onInput=${setUsername} required autocomplete="username" />
      <${Text} label="Password" name="password" type="password" value=${password} onInput=${setPassword} required autocomplete="current-password" />
      ${needsTotp &&
      html`<${Text} label="Authentication code" name="totp" value=${totp} onInput=${setTotp} required inputmode="numeric" autocomplete="one-time-code" hint="The 6-digit code from your authenticator app." />`}
      <${Problem} error=${error} />
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}

function currentRoute() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  return hash.startsWith("/") ? hash : "/" + hash;
}

function Shell({ me, onLogout }) {
  const [route, setRoute] = useState(currentRoute());
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => {
    const follow = () => {
      setRoute(currentRoute());
      setMenuOpen(false);
    };
    window.addEventListener("hashchange", follow);
    // The hash may have changed between the first render and this effect.
    setRoute(currentRoute());
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  const has = (entitlement) => me.entitlements.includes(entitlement);
  const principal = { me, has };
  const { page, params } = pageFor(route);
  const may = (p) => !p.entitlement || [].concat(p.entitlement).some(has);
  const visible = PAGES.filter((p) => p.nav && may(p));
  const allowed = may(page);
  return html`<${Principal.Provider} value=${principal}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
    <div class="shell">
      <header class="topbar">
        <button type="button" class="menu-toggle" aria-expanded=${menuOpen ? "true" : "false"} aria-controls="side-nav" onClick=${() => setMenuOpen(!menuOpen)}>Menu</button>
        <span class="brand">SignVault</span>
        <span class="who">${me.name}</span>
        <a class="account" href="#/account" aria-current=${route === "/account" ? "page" : undefined}>Account</a>
        <button type="button" onClick=${onLogout}>Log out</button>
      </header>
      <nav id="side-nav" class=${menuOpen ? "side open" : "side"} aria-label="Console pages">
        <ul>
          ${visible.map(
            // Closed on a click too: choosing the page already open changes no hash.
            (p) => html`<li><a href=${"#" + p.path} aria-current=${page === p ? "page" : undefined} onClick=${() => setMenuOpen(false)}>${p.title}</a></li>`,
          )}
        </ul>
      </nav>
      <main id="main" tabindex="-1">
        ${allowed
          ? html`<${page.component} key=${route} params=${params} />`
          : html`<${PageTitle}>${page.title}<//><${Missing} entitlement=${[].concat(page.entitlement).join(" or ")} />`}
      </main>
    </div>
  <//>`;
}

function Console() {
  const [phase, setPhase] = useState("login"); // login | password | two-factor | ready
  const [me, setMe] = useState(null);
  const [reason, setReason] = useState("");
  const [username, setUsername] = useState("");
  useEffect(() => {
    api.onSession({
      ended: (why) => {
        setMe(null);
        setReason(why);
        setPhase("login");
      },
      pending: (code) => setPhase(code === "two_factor_enrolment_required" ? "two-factor" : "password"),
    });
  }, []);

  const enter = async () => {
    const who = await api.call("/auth/me");
    setMe(who);
    setReason("");
    setPhase(who.must_change_password ? "password" : "ready");
  };
  const afterLogin = async (credentials) => {
    setUsername(credentials.username);
    await enter();
  };
  const afterPasswordChange = async (fresh) => {
    // A changed password ends the old sessions: log in again with the new one.
    await api.login(username || me.username, fresh);
    await enter();
  };
  const logout = async () => {
    try {
      await api.logout();
    } finally {
      setMe(null);
      setReason("You have logged out.");
      setPhase("login");
    }
  };

  if (phase === "login") return html`<${LoginForm} onDone=${afterLogin} reason=${reason} />`;
  if (phase === "password")
    return html`<main class="login"><${PageTitle}>Change your password<//><${PasswordChange} forced username=${me?.name} onDone=${afterPasswordChange} /></main>`;
  if (phase === "two-factor")
    return html`<main class="login"><${PageTitle}>Two-factor authentication<//>
      <div class="notice" role="status">Administrators must use two-factor authentication here: set it up to go on.</div>
      <${TwoFactorEnrolment} onDone=${enter} /></main>`;
  return html`<${Shell} me=${me} onLogout=${logout} />`;
}

const root = document.getElementById("app");
root.replaceChildren(); // the "Loading…" placeholder
render(html`<${Console} />`, root);
