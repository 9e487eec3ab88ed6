/** The error codes of /admin (platform administration). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const ADMIN_ERROR_CODES = {
  PLATFORM_ADMIN_REQUIRED: { status: 403, description: 'Platform administrators only' },
  CROSS_SITE_REQUEST: { status: 403, description: 'Admin actions must come from the admin pages of this site' },
  CANNOT_DISABLE_SELF: { status: 409, description: 'Platform admins cannot disable their own account' },
  INVALID_TIME_RANGE: { status: 400, description: 'A query’s since must be before its until' },
  TENANT_ID_REQUIRED: { status: 400, description: 'The tenant queue’s jobs are listed one tenant at a time: give tenantId' },
  ADMIN_API_KEY_NOT_FOUND: { status: 404, description: 'No such platform API key' },
  IDS_OR_FILTER: { status: 400, description: 'A bulk action takes exactly one of ids and filter' },
  OWNER_NOT_FOUND: { status: 404, description: 'No account has the owner email given for a new tenant' },
  OWNER_DISABLED: { status: 409, description: 'The account named as a new tenant’s owner is disabled' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof ADMIN_ERROR_CODES> {}
}
