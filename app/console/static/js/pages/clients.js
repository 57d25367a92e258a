import { html, PageTitle } from "../ui.js";

export function ClientsPage() {
  return html`<${PageTitle}>clients<//><p>Not built yet.</p>`;
}
