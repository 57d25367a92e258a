from app.core.errors import (
    AppError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
)


class PasswordRejected(InvalidInput):
    code = "password_policy_violation"
    title = "Password does not meet the password policy"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"


class RoleNotFound(NotFound):
    code = "role_not_found"
    title = "Role not found"


class DepartmentNotFound(NotFound):
    code = "department_not_found"
    title = "Department not found"


class UsernameTaken(Conflict):
    code = "username_taken"
    title = "Username taken"


class NameTaken(Conflict):
    code = "name_taken"
    title = "Name taken"


class LastAdministrator(Conflict):
    code = "last_administrator"
    title = "The last active administrator must remain"


class BuiltinRoleProtected(Conflict):
    code = "builtin_role_protected"
    title = "Built-in roles cannot be deleted, renamed or stripped"


class StillReferenced(Conflict):
    code = "still_referenced"
    title = "Still in use"


class PrivilegeEscalation(Forbidden):
    code = "entitlement_escalation"
    title = "Cannot grant or manage entitlements you do not hold"


class SelfChangeForbidden(Forbidden):
    code = "self_change_forbidden"
    title = "You cannot change your own roles or department"


class DepartmentOutOfScope(Forbidden):
    code = "department_out_of_scope"
    title = "Outside your own department"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"
    title = "Password change required"


class TwoFactorEnrolmentRequired(Forbidden):
    code = "two_factor_enrolment_required"
    title = "Two-factor enrolment required"


class WrongPassword(AppError):
    status = 403
    code = "wrong_password"
    title = "Current password is wrong"


class LoginLockedOut(TooManyRequests):
    code = "login_locked_out"
    title = "Too many failed logins from this address"


class LoginDelayed(TooManyRequests):
    code = "login_delayed"
    title = "Too many failed logins for this account"
