/** The error codes of /api/webhooks. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const WEBHOOK_ERROR_CODES = {
  WEBHOOK_ENDPOINT_NOT_FOUND: { status: 404, description: 'No such webhook endpoint in this tenant' },
  WEBHOOK_DELIVERY_NOT_FOUND: { status: 404, description: 'No such delivery for this endpoint' },
  WEBHOOK_URL_INVALID: { status: 400, description: 'The endpoint URL is not an absolute http(s) URL (https in production), or carries credentials' },
  WEBHOOK_URL_FORBIDDEN: {
    status: 400,
    description: 'The endpoint URL resolves to a private, loopback, link-local or otherwise internal address (details.address), or does not resolve',
  },
  WEBHOOK_ENDPOINT_DISABLED: { status: 409, description: 'The endpoint is disabled: enable it (PATCH enabled: true) before redelivering' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof WEBHOOK_ERROR_CODES> {}
}
