/** The error codes of inbound webhooks (POST /webhooks/<name>). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const INBOUND_WEBHOOK_ERROR_CODES = {
  WEBHOOK_SIGNATURE_INVALID: { status: 400, description: 'The webhook’s signature header is missing, malformed, stale or does not verify: nothing was recorded' },
  WEBHOOK_EVENT_ID_MISSING: { status: 400, description: 'The signed delivery names no event id (e.g. no X-GitHub-Delivery header): it cannot be deduplicated' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof INBOUND_WEBHOOK_ERROR_CODES> {}
}
