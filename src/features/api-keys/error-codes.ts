/** The error codes of /api/api-keys. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const API_KEY_ERROR_CODES = {
  API_KEY_NOT_FOUND: { status: 404, description: 'No such API key in this tenant' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof API_KEY_ERROR_CODES> {}
}
