/** The error codes of /api/audit-logs (the same time-range rule as the admin audit log's). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const AUDIT_LOG_ERROR_CODES = {
  INVALID_TIME_RANGE: { status: 400, description: 'The audit log query’s since must be before its until' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof AUDIT_LOG_ERROR_CODES> {}
}
