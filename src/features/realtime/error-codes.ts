/** The error codes of /api/events (realtime streams). */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const REALTIME_ERROR_CODES = {
  REALTIME_CONNECTION_LIMIT: {
    status: 429,
    description:
      'Too many open realtime connections: details.scope is "user" (REALTIME_MAX_PER_USER, all tenants) or "tenant" (the plan’s realtimeConnections under REALTIME_MAX_PER_TENANT), details.limit the cap; close one first',
  },
  ORIGIN_NOT_ALLOWED: {
    status: 403,
    description: 'The WebSocket handshake came from a page whose Origin is not APP_BASE_URL’s nor in REALTIME_ALLOWED_ORIGINS',
  },
  UPGRADE_REQUIRED: { status: 426, description: 'GET /api/events/ws is a WebSocket endpoint: send the handshake (Upgrade: websocket)' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof REALTIME_ERROR_CODES> {}
}
