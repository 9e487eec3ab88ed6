/** The error codes of /api/settings and /api/me/preferences. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const SETTINGS_ERROR_CODES = {
  INVALID_TIMEZONE: { status: 400, description: 'Not an IANA time zone' },
  INVALID_CURRENCY: { status: 400, description: 'Not an ISO 4217 currency code' },
  INVALID_KEY: { status: 400, description: 'A flag or preference name is not a lowercase identifier' },
  TENANT_USER_NOT_FOUND: { status: 404, description: 'You have no user record in this tenant' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof SETTINGS_ERROR_CODES> {}
}
