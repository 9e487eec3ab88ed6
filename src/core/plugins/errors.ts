/**
 * The one error handler and the 404 handler. Every error leaves as
 * `{ statusCode, error, message, code }`; 5xx never reveal internals; 404s are rate limited so the
 * API can't be cheaply scanned.
 *
 * A dependency that is down (Postgres or Redis refusing, restarting, too slow: lib/errors.ts
 * isDependencyDown) is not a bug: 503 SERVICE_UNAVAILABLE, logged as a warning without a stack. Every
 * 503 carries Retry-After (1 s when only the pool budget is busy, 2 s while the tenant moves, 5 s for an outage).
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { databaseFailure } from '../lib/error-log.js'
import { AppError, errorBody, isDependencyDown, PG, pgCode, TENANT_MOVING_MESSAGE } from '../lib/errors.js'

export const RETRY_AFTER_S = { outage: 5, poolBusy: 1, moving: 2 } as const


interface FastifyLikeError extends Error {
  statusCode?: number
  code?: string
  validation?: unknown[]
  validationContext?: string
}

// Fastify's own 4xx codes, renamed to stable API codes.
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_BODY',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_BODY',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_BODY',
  FST_ERR_BAD_URL: 'BAD_URL',
  FST_ERR_MAX_PARAM_LENGTH: 'URI_TOO_LONG',
  FST_CSRF_MISSING_SECRET: 'CSRF_INVALID',
  FST_CSRF_INVALID_TOKEN: 'CSRF_INVALID',
}

export function toErrorBody(err: FastifyLikeError) {
  if (err instanceof AppError) return { ...errorBody(err.statusCode, err.code, err.message), ...err.details }
  // A write that passed the guard just before its tenant started moving, or a GET that writes.
  if (pgCode(err) === PG.readOnlyTransaction) return errorBody(503, 'TENANT_MOVING', TENANT_MOVING_MESSAGE)
  if (isDependencyDown(err)) return errorBody(503, 'SERVICE_UNAVAILABLE', 'A service this request needs is unavailable; try again shortly')
  if (err.validation) return errorBody(400, 'VALIDATION_ERROR', err.message)
  // Backstop for text the schemas let through: Postgres refusing a character is the client's input, not our bug.
  const sqlState = pgCode(err)
  if (sqlState === PG.characterNotInRepertoire || sqlState === PG.untranslatableCharacter)
    return errorBody(400, 'INVALID_CHARACTERS', 'The request contains characters that cannot be stored')
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
  if (status === 429) return errorBody(429, 'RATE_LIMITED', err.message)
  if (status >= 500) return errorBody(status, status === 503 ? 'SERVICE_UNAVAILABLE' : 'INTERNAL_ERROR', 'Something went wrong on our side')
  const code = (err.code && FASTIFY_CODES[err.code]) ?? (err.code && /^[A-Z_]+$/.test(err.code) ? err.code : 'BAD_REQUEST')
  return errorBody(status, code, err.message)
}

/**
 * Fastify's router answers some requests before any hook or error handler runs (a path that is not
 * valid percent-encoding, a path parameter over maxParamLength): `frameworkErrors` routes those here.
 */
export function frameworkErrors(err: FastifyLikeError, _req: FastifyRequest, reply: FastifyReply) {
  const body = toErrorBody(err)
  reply.log.info({ code: body.code, statusCode: body.statusCode }, body.message)
  return reply.code(body.statusCode).send(body)
}

// What Node's HTTP parser rejects never becomes a request (bad Content-Length, smuggling attempts,
// oversized headers, a client too slow to send its request).
const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'REQUEST_TIMEOUT', 'The request was not received in time'],
  HPE_HEADER_OVERFLOW: [431, 'HEADERS_TOO_LARGE', 'The request headers are too large'],
  HPE_INVALID_CONTENT_LENGTH: [400, 'INVALID_CONTENT_LENGTH', 'The Content-Length header is not valid'],
  HPE_UNEXPECTED_CONTENT_LENGTH: [400, 'INVALID_CONTENT_LENGTH', 'The Content-Length header is sent more than once'],
  HPE_INVALID_TRANSFER_ENCODING: [400, 'INVALID_CONTENT_LENGTH', 'Content-Length and Transfer-Encoding must not both be sent'],
}

/** `clientErrorHandler`: the kit's error body for requests Node could not parse, then close the connection. */
export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, code, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'MALFORMED_REQUEST', 'The request could not be parsed as HTTP']
  this.log.debug({ code, parserCode: err.code }, 'client error')
  if (socket.writable) {
    const body = JSON.stringify(errorBody(status, code, message))
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(err)
}

export default fp(
  async (fastify) => {
    fastify.setErrorHandler((err: FastifyLikeError, req, reply) => {
      const body = toErrorBody(err)
      if (body.statusCode === 503) {
        // One line, no stack: the root cause's code, and for a failed query only what error-log allows (no SQL, no parameters).
        let root: unknown = err
        while ((root as { cause?: unknown }).cause instanceof Error) root = (root as { cause: Error }).cause
        const db = databaseFailure(err)
        const { code, message } = root as { code?: string; message?: string }
        req.log.warn({ code: body.code, cause: db?.sqlState ?? db?.code ?? code, error: db ? db.message : message }, 'request answered 503')
        const retryAfter = body.code === 'POOL_EXHAUSTED' ? RETRY_AFTER_S.poolBusy : body.code === 'TENANT_MOVING' ? RETRY_AFTER_S.moving : RETRY_AFTER_S.outage
        reply.header('retry-after', String(retryAfter))
      } else if (body.statusCode >= 500) req.log.error({ err: databaseFailure(err) ?? err }, 'request failed')
      else req.log.info({ code: body.code, statusCode: body.statusCode }, body.message)
      return reply.code(body.statusCode).send(body)
    })

    fastify.setNotFoundHandler(
      { preHandler: fastify.rateLimit({ max: 60, timeWindow: '1 minute' }) },
      (req, reply) => reply.code(404).send(errorBody(404, 'NOT_FOUND', `Route ${req.method} ${req.url.split('?')[0]} not found`)),
    )
  },
  { name: 'errors', dependencies: ['rate-limit'] },
)
