import { html, PageTitle } from "../ui.js";

export function UsersPage() {
  return html`<${PageTitle}>users<//><p>Not built yet.</p>`;
}
