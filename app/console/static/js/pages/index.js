// The console's pages: path, title, the entitlement a page needs, and its component.
import { DashboardPage } from "./dashboard.js";
import { DocumentsPage, DocumentPage } from "./documents.js";
import { CertificatesPage } from "./certificates.js";
import { UsersPage } from "./users.js";
import { ClientsPage } from "./clients.js";
import { AuditPage } from "./audit.js";
import { NotificationsPage } from "./notifications.js";
import { SettingsPage } from "./settings.js";
import { AccountPage } from "./account.js";

export const PAGES = [
  { path: "/", title: "Dashboard", component: DashboardPage, nav: true },
  { path: "/documents", title: "Documents", entitlement: "documents:read", component: DocumentsPage, nav: true },
  { path: "/certificates", title: "Certificates", entitlement: "certificates:read", component: CertificatesPage, nav: true },
  { path: "/users", title: "Users, departments and roles", entitlement: "users:read", component: UsersPage, nav: true },
  { path: "/clients", title: "API clients", entitlement: "clients:read", component: ClientsPage, nav: true },
  { path: "/audit", title: "Audit log", entitlement: "audit:read", component: AuditPage, nav: true },
  { path: "/notifications", title: "Notifications", entitlement: "notifications:read", component: NotificationsPage, nav: true },
  { path: "/settings", title: "Settings and licence", entitlement: ["settings:read", "license:read"], component: SettingsPage, nav: true },
  { path: "/account", title: "Your account", component: AccountPage, nav: false },
];
const DOCUMENT = { path: "/documents/:id", title: "Document", entitlement: "documents:read", component: DocumentPage };
const NOT_FOUND = { path: "", title: "Not found", component: () => null };

export function pageFor(route) {
  const document = /^\/documents\/([0-9a-f-]{36})$/.exec(route);
  if (document) return { page: DOCUMENT, params: { id: document[1] } };
  const page = PAGES.find((p) => p.path === route);
  return page ? { page, params: {} } : { page: { ...NOT_FOUND, component: () => `No page at ${route}.` }, params: {} };
}
