/** The error codes of /tenants and /api/tenant (a tenant managing itself). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const TENANT_ERROR_CODES = {
  CONFIRMATION_MISMATCH: { status: 400, description: 'Deleting a tenant needs its slug sent back as { "confirm": slug }' },
  EXPORT_NOT_FOUND: { status: 404, description: 'No such export in this tenant' },
  EXPORT_IN_PROGRESS: { status: 409, description: 'An export of this tenant is already pending or running' },
  EXPORT_NOT_READY: { status: 409, description: 'The export is not ready yet' },
  EXPORT_FAILED: { status: 409, description: 'The export failed; request a new one' },
  EXPORT_GONE: { status: 410, description: 'The export was already downloaded (once only) or has expired' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof TENANT_ERROR_CODES> {}
}
