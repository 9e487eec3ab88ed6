/** The error codes of signup, login, Google sign-in and the account's self-service (/auth, /me). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const AUTH_ERROR_CODES = {
  INVALID_CREDENTIALS: { status: 401, description: 'Wrong email or password' },
  TENANT_SETUP_FAILED: { status: 503, description: 'Signup could not create the personal workspace, so the account was not kept: sign up again' },
  INVALID_NEXT: { status: 400, description: 'The redirect after Google sign-in must be a path on this site' },
  OAUTH_DISABLED: { status: 503, description: 'Google sign-in is not configured' },
  OAUTH_STATE_INVALID: { status: 400, description: 'The sign-in state is missing, expired or does not match this browser' },
  OAUTH_CALLBACK_INVALID: { status: 400, description: 'The provider’s callback lacks code and state (or an error)' },
  USER_NOT_FOUND: { status: 404, description: 'This account no longer exists' },
  USER_GONE: { status: 409, description: 'This account no longer exists' },
  NAME_EMPTY: { status: 400, description: 'The name must contain something besides spaces' },
  NO_PASSWORD_SET: { status: 400, description: 'The account signs in with Google and has no password: use the password reset link to set one' },
  CURRENT_PASSWORD_INVALID: { status: 403, description: 'The current password is missing or incorrect' },
  EMAIL_UNCHANGED: { status: 400, description: 'This is already the address of your account' },
  EMAIL_ALREADY_VERIFIED: { status: 409, description: 'The email address is already verified' },
  TOKEN_WRONG_ACCOUNT: { status: 403, description: 'The emailed link belongs to another account' },
  LAST_OWNER_OF_SHARED_TENANT: { status: 409, description: 'You are the last owner of a tenant others use: hand ownership over first (details.tenants)' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof AUTH_ERROR_CODES> {}
}
