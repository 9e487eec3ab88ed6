/**
 * The one error handler and the 404 handler. Every error leaves as
 * `{ statusCode, error, message, code }`; 5xx never reveal internals; 404s are rate limited so the
 * API can't be cheaply scanned.
 */
import fp from 'fastify-plugin'
import { AppError, errorBody, PG, pgCode } from '../../lib/errors.js'

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
  FST_CSRF_MISSING_SECRET: 'CSRF_INVALID',
  FST_CSRF_INVALID_TOKEN: 'CSRF_INVALID',
}

export function toErrorBody(err: FastifyLikeError) {
  if (err instanceof AppError) return { ...errorBody(err.statusCode, err.code, err.message), ...err.details }
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

export default fp(
  async (fastify) => {
    fastify.setErrorHandler((err: FastifyLikeError, req, reply) => {
      const body = toErrorBody(err)
      if (body.statusCode >= 500) req.log.error({ err }, 'request failed')
      else req.log.info({ code: body.code, statusCode: body.statusCode }, err.message)
      return reply.code(body.statusCode).send(body)
    })

    fastify.setNotFoundHandler(
      { preHandler: fastify.rateLimit({ max: 60, timeWindow: '1 minute' }) },
      (req, reply) => reply.code(404).send(errorBody(404, 'NOT_FOUND', `Route ${req.method} ${req.url.split('?')[0]} not found`)),
    )
  },
  { name: 'errors', dependencies: ['rate-limit'] },
)
