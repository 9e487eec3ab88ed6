/**
 * Request ids and the identity every request log line carries.
 *
 * The id: `x-request-id` from the client only when a trusted proxy put it there (TRUST_PROXY), and only a
 * short id of safe characters (it lands in every log line and in a response header); otherwise a UUID.
 * Fastify's per-request logger (req.log, the same object as reply.log) is bound to it as `reqId`, and
 * `bindLogContext` adds userId / tenantId to that logger once the guards know them, so every line logged
 * after that point, down to Fastify's "request completed", names who and which tenant.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'

export const REQUEST_ID_HEADER = 'x-request-id'
/** What a proxy's id may look like: a UUID, a ULID, a trace id, "lb-1234:5"… never spaces, quotes or control characters. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/

/** Fastify's genReqId: the proxy's id when trusted and well-formed, else a fresh UUID. */
export function requestIdGenerator(trustProxy: boolean): (req: IncomingMessage) => string {
  return (req) => {
    const given = trustProxy ? req.headers[REQUEST_ID_HEADER] : undefined
    return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID()
  }
}

export interface LogContext {
  userId?: string
  tenantId?: string
}

/** Adds the caller's identity to this request's logger (pino setBindings; a disabled logger has none). */
export function bindLogContext(req: FastifyRequest, context: LogContext): void {
  const log = req.log as { setBindings?: (bindings: LogContext) => void }
  log.setBindings?.(context)
}
