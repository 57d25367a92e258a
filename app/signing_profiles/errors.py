from app.core.errors import Conflict, InvalidInput, NotFound


class SigningProfileNotFound(NotFound):
    code = "signing_profile_not_found"
    title = "Signing profile not found"


class UnknownSigningProfile(InvalidInput):
    code = "unknown_signing_profile"
    title = "Unknown signing profile"


class SigningProfileNameTaken(Conflict):
    code = "signing_profile_name_taken"
    title = "Signing profile name taken"
