import { html, PageTitle } from "../ui.js";

export function NotificationsPage() {
  return html`<${PageTitle}>notifications<//><p>Not built yet.</p>`;
}
