from app.core.errors import InvalidInput


class InvalidTrustRoot(InvalidInput):
    code = "invalid_trust_root"
    title = "Invalid trust root"


class UploadLimitAboveServerCap(InvalidInput):
    code = "upload_limit_above_server_cap"
    title = "Upload limit above the server's cap"
