"""The fixed catalogue of entitlements (`area:verb`); roles bundle them, clients get them as scopes."""

from enum import StrEnum


class Entitlement(StrEnum):
    CLIENTS_READ = "clients:read"
    CLIENTS_WRITE = "clients:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    DEPARTMENTS_READ = "departments:read"
    DEPARTMENTS_WRITE = "departments:write"
    ROLES_READ = "roles:read"
    ROLES_WRITE = "roles:write"
    SETTINGS_READ = "settings:read"
    SETTINGS_WRITE = "settings:write"
    CERTIFICATES_READ = "certificates:read"
    CERTIFICATES_WRITE = "certificates:write"
    CERTIFICATES_ASSIGN = "certificates:assign"
    DOCUMENTS_READ = "documents:read"
    DOCUMENTS_WRITE = "documents:write"
    DOCUMENTS_DELETE = "documents:delete"
    DOCUMENTS_SIGN = "documents:sign"
    DOCUMENTS_VERIFY = "documents:verify"
    AUDIT_READ = "audit:read"
    AUDIT_EXPORT = "audit:export"
    AUDIT_CONFIGURE = "audit:configure"
    NOTIFICATIONS_READ = "notifications:read"
    NOTIFICATIONS_WRITE = "notifications:write"
    LICENSE_READ = "license:read"
    LICENSE_WRITE = "license:write"
    REPORTS_READ = "reports:read"
    METRICS_READ = "metrics:read"


DESCRIPTIONS: dict[Entitlement, str] = {
    Entitlement.CLIENTS_READ: "List and read OAuth2 API clients.",
    Entitlement.CLIENTS_WRITE: "Create, change, rotate, disable and delete API clients.",
    Entitlement.USERS_READ: "List and read users.",
    Entitlement.USERS_WRITE: "Create, change, disable, unlock and delete users; reset passwords.",
    Entitlement.DEPARTMENTS_READ: "List and read departments.",
    Entitlement.DEPARTMENTS_WRITE: "Create, change and delete departments.",
    Entitlement.ROLES_READ: "List roles and the entitlement catalogue.",
    Entitlement.ROLES_WRITE: "Create, change and delete roles.",
    Entitlement.SETTINGS_READ: "Read server settings (password policy, security, signing, documents).",
    Entitlement.SETTINGS_WRITE: "Change server settings.",
    Entitlement.CERTIFICATES_READ: "List and read vault certificates and their chains (never keys).",
    Entitlement.CERTIFICATES_WRITE: "Import, register, change, disable, revoke and delete certificates.",
    Entitlement.CERTIFICATES_ASSIGN: "Assign certificates to users and departments.",
    Entitlement.DOCUMENTS_READ: "List, read and download documents, their signatures and audit trails.",
    Entitlement.DOCUMENTS_WRITE: "Upload documents and change their metadata.",
    Entitlement.DOCUMENTS_DELETE: "Delete documents permanently.",
    Entitlement.DOCUMENTS_SIGN: "Sign documents with an assigned certificate.",
    Entitlement.DOCUMENTS_VERIFY: "Validate signatures in documents.",
    Entitlement.AUDIT_READ: "Search and read the audit log; verify its chain.",
    Entitlement.AUDIT_EXPORT: "Export the audit log.",
    Entitlement.AUDIT_CONFIGURE: "Change audit retention settings.",
    Entitlement.NOTIFICATIONS_READ: "Read notification rules, SMTP settings and deliveries.",
    Entitlement.NOTIFICATIONS_WRITE: "Change notification rules and SMTP settings.",
    Entitlement.LICENSE_READ: "Read the licence state and usage.",
    Entitlement.LICENSE_WRITE: "Install a licence.",
    Entitlement.REPORTS_READ: "Read usage reports.",
    Entitlement.METRICS_READ: "Read Prometheus metrics when they are not public.",
}

ALL: frozenset[str] = frozenset(e.value for e in Entitlement)

BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "administrator": ("Everything, including access control and settings.", ALL),
    "signer": (
        "Uploads, signs and verifies documents with assigned certificates.",
        frozenset(
            {
                Entitlement.DOCUMENTS_READ,
                Entitlement.DOCUMENTS_WRITE,
                Entitlement.DOCUMENTS_SIGN,
                Entitlement.DOCUMENTS_VERIFY,
                Entitlement.CERTIFICATES_READ,
            }
        ),
    ),
    "auditor": (
        "Reads and exports the audit log and reports; verifies documents.",
        frozenset(
            {
                Entitlement.AUDIT_READ,
                Entitlement.AUDIT_EXPORT,
                Entitlement.REPORTS_READ,
                Entitlement.DOCUMENTS_READ,
                Entitlement.DOCUMENTS_VERIFY,
            }
        ),
    ),
    "certificate-manager": (
        "Manages the certificate vault and who may sign with what.",
        frozenset(
            {
                Entitlement.CERTIFICATES_READ,
                Entitlement.CERTIFICATES_WRITE,
                Entitlement.CERTIFICATES_ASSIGN,
                Entitlement.USERS_READ,
                Entitlement.DEPARTMENTS_READ,
            }
        ),
    ),
}
