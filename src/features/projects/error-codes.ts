/** The error codes of /api/projects. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const PROJECT_ERROR_CODES = {
  PROJECT_NOT_FOUND: { status: 404, description: 'No such project in this tenant' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof PROJECT_ERROR_CODES> {}
}
