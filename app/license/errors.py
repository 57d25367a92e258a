from app.core.errors import AppError, Forbidden, NotFound


class LicenseFileRefused(AppError):
    """A licence file that cannot be installed; the licence in force stays."""

    status = 422
    code = "license_refused"
    title = "Licence file refused"


class LicenseMalformed(LicenseFileRefused):
    code = "license_malformed"
    title = "Not a licence file"


class LicenseSignatureInvalid(LicenseFileRefused):
    code = "license_signature_invalid"
    title = "Licence signature invalid"


class LicenseWrongIssuer(LicenseFileRefused):
    code = "license_wrong_issuer"
    title = "Licence from another issuer"


class LicenseNotYetValid(LicenseFileRefused):
    code = "license_not_yet_valid"
    title = "Licence not valid yet"


class LicenseAlreadyExpired(LicenseFileRefused):
    code = "license_already_expired"
    title = "Licence already expired"


class LicenseNotInstalled(NotFound):
    code = "license_not_installed"
    title = "No licence installed"


class LicenseRefusal(Forbidden):
    """The licence does not allow this operation (everything else keeps working)."""


class LicenseExpired(LicenseRefusal):
    code = "license_expired"
    title = "Licence expired"


class LicenseInvalid(LicenseRefusal):
    code = "license_invalid"
    title = "Installed licence invalid"


class LicenseLimitReached(LicenseRefusal):
    code = "license_limit_reached"
    title = "Licence limit reached"


class LicenseFeatureMissing(LicenseRefusal):
    code = "license_feature_missing"
    title = "Feature not licensed"
