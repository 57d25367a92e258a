"""The vault's refusals: each a stable `code`."""

from app.core.errors import AppError, Conflict, Forbidden, NotFound


class CertificateNotFound(NotFound):
    code = "certificate_not_found"
    title = "Certificate not found"


class AssignmentNotFound(NotFound):
    code = "assignment_not_found"
    title = "Assignment not found"


class ImportRefused(AppError):
    """A PKCS#12 file or certificate the vault does not accept."""

    status = 422


class NotPkcs12(ImportRefused):
    code = "not_pkcs12"
    title = "Not a PKCS#12 file"


class Pkcs12TooLarge(ImportRefused):
    code = "pkcs12_too_large"
    title = "PKCS#12 file too large"


class Pkcs12KdfTooCostly(ImportRefused):
    code = "pkcs12_kdf_too_costly"
    title = "PKCS#12 key derivation too costly"


class Pkcs12UnsupportedProtection(ImportRefused):
    code = "pkcs12_unsupported_protection"
    title = "PKCS#12 protection not supported"


class WrongPassword(ImportRefused):
    code = "pkcs12_wrong_password"
    title = "Wrong PKCS#12 password"


class NoPrivateKey(ImportRefused):
    code = "pkcs12_no_private_key"
    title = "No private key in the file"


class NoCertificate(ImportRefused):
    code = "pkcs12_no_certificate"
    title = "No certificate in the file"


class KeyMismatch(ImportRefused):
    code = "key_certificate_mismatch"
    title = "Key and certificate do not match"


class CertificateExpired(ImportRefused):
    code = "certificate_expired"
    title = "Certificate expired"


class CertificateNotYetValid(ImportRefused):
    code = "certificate_not_yet_valid"
    title = "Certificate not yet valid"


class KeyUsageNotSigning(ImportRefused):
    code = "key_usage_not_signing"
    title = "Key usage does not allow signing"


class UnsupportedKeyType(ImportRefused):
    code = "unsupported_key_type"
    title = "Unsupported key type"


class InvalidCertificate(ImportRefused):
    code = "invalid_certificate"
    title = "Not a certificate"


class DuplicateCertificate(Conflict):
    code = "certificate_duplicate"
    title = "Certificate already in the vault"


class DuplicateAssignment(Conflict):
    code = "assignment_duplicate"
    title = "Already assigned"


class CertificateDisabled(Conflict):
    code = "certificate_disabled"
    title = "Certificate disabled"


class CertificateRevoked(Conflict):
    code = "certificate_revoked"
    title = "Certificate revoked"


class CertificateDeleted(Conflict):
    code = "certificate_deleted"
    title = "Certificate deleted"


class CertificateNotAssigned(Forbidden):
    code = "certificate_not_assigned"
    title = "Certificate not assigned to you"


class CertificateOtherDepartment(Forbidden):
    code = "certificate_other_department"
    title = "Certificate belongs to another department"


class KeyUnavailable(AppError):
    """The key exists but cannot be used now (master key, HSM)."""

    status = 503
    code = "key_unavailable"
    title = "Signing key unavailable"


class Pkcs11NotConfigured(AppError):
    """Not unavailable but not set up: no retry helps until an operator sets the module."""

    status = 409
    code = "pkcs11_not_configured"
    title = "No PKCS#11 module configured"


class Pkcs11ObjectNotFound(ImportRefused):
    code = "pkcs11_object_not_found"
    title = "Token, key or certificate not found in the HSM"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"


class DefaultNotAssigned(AppError):
    status = 422
    code = "default_certificate_not_assigned"
    title = "Certificate not assigned to the user"
