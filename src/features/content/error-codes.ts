/** The error codes of the blog (/blog). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const CONTENT_ERROR_CODES = {
  POST_NOT_FOUND: { status: 404, description: 'No published post has this slug' },
  PAGE_NOT_FOUND: { status: 404, description: 'The blog has fewer pages than the one asked for' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof CONTENT_ERROR_CODES> {}
}
