/** The error codes of /tenants and /api/tenant (a tenant managing itself). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const TENANT_ERROR_CODES = {
  CONFIRMATION_MISMATCH: { status: 400, description: 'Deleting a tenant needs its slug sent back as { "confirm": slug }' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof TENANT_ERROR_CODES> {}
}
