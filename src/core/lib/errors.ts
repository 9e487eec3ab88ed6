/**
 * One error type for everything the API answers on purpose. The error handler turns it into
 * `{ statusCode, error, message, code }`; anything else is a bug and becomes a 500 that hides internals.
 * Codes come from the ERROR_CODES table (error-codes.ts), each with its status: an undeclared code, or a
 * code with another status than its declared one, does not compile.
 */
import { STATUS_CODES } from 'node:http'
import type { ErrorCode, ErrorCodeFor } from './error-codes.js'

class KitError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message)
    this.name = 'AppError'
  }
}

/** `new AppError(404, 'PROJECT_NOT_FOUND', message)`: the code must be declared with that status (a plain `number` status takes any code). */
export const AppError: new <S extends number>(statusCode: S, code: ErrorCodeFor<S>, message: string, details?: Record<string, unknown>) => KitError =
  KitError
export type AppError = KitError

export const badRequest = (code: ErrorCodeFor<400>, message: string, details?: Record<string, unknown>) => new AppError(400, code, message, details)
export const unauthorized = (code: ErrorCodeFor<401> = 'UNAUTHENTICATED', message = 'Authentication required') => new AppError(401, code, message)
export const paymentRequired = (code: ErrorCodeFor<402>, message: string) => new AppError(402, code, message)
export const forbidden = (code: ErrorCodeFor<403>, message: string, details?: Record<string, unknown>) => new AppError(403, code, message, details)
export const notFound = (code: ErrorCodeFor<404>, message: string) => new AppError(404, code, message)
export const conflict = (code: ErrorCodeFor<409>, message: string) => new AppError(409, code, message)
export const unavailable = (code: ErrorCodeFor<503>, message: string) => new AppError(503, code, message)

export const TENANT_MOVING_MESSAGE = 'This tenant is moving to another database: writes are paused for a moment, reads work; try again shortly'
/** 503 TENANT_MOVING (Retry-After): a write to a tenant while it moves (src/core/tenancy/move). */
export const tenantMoving = () => new AppError(503, 'TENANT_MOVING', TENANT_MOVING_MESSAGE)

export function errorBody(statusCode: number, code: string, message: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, code }
}

/** Postgres SQLSTATEs we branch on. */
export const PG = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  duplicateDatabase: '42P04',
  invalidCatalogName: '3D000',
  tooManyConnections: '53300',
  /** A write in a read-only transaction: only a moving tenant's handles are read-only (tenancy/move). */
  readOnlyTransaction: '25006',
  /** A NUL byte in text (`character_not_in_repertoire`). */
  characterNotInRepertoire: '22021',
  /** `\u0000` in jsonb, or a character the encoding can't hold (`untranslatable_character`). */
  untranslatableCharacter: '22P05',
} as const

/** The SQLSTATE of a postgres.js error, also when drizzle wrapped it (DrizzleQueryError keeps it in `cause`). */
export function pgCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code
  }
  return undefined
}

/**
 * Connection-class failures: a dependency (Postgres, Redis) is down, restarting, refusing or too slow,
 * not a bug. The error handler answers them 503 SERVICE_UNAVAILABLE with Retry-After.
 * - socket level: refused, reset, timed out, unreachable;
 * - postgres.js: CONNECT_TIMEOUT and a connection closed/ended/destroyed under a query;
 * - SQLSTATE: class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect now:
 *   starting up or recovering), 53300 (too many clients), 57014 (statement_timeout);
 * - ioredis: MaxRetriesPerRequestError, "Connection is closed.", "Command timed out", offline queue off.
 */
const DOWN_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '57014',
])
const REDIS_DOWN = /^(Connection is closed\.|Command timed out|Stream isn't writeable|Reached the max retries per request limit)/

export function isDependencyDown(err: unknown): boolean {
  const seen = new Set<unknown>()
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 6 && !seen.has(e); e = (e as { cause?: unknown }).cause, depth++) {
    seen.add(e)
    const { code, name, message } = e as { code?: unknown; name?: unknown; message?: unknown }
    if (typeof code === 'string' && (DOWN_CODES.has(code) || code.startsWith('08'))) return true
    if (name === 'MaxRetriesPerRequestError') return true
    if (typeof message === 'string' && REDIS_DOWN.test(message)) return true
    // AggregateError (e.g. a connect to both ::1 and 127.0.0.1 refused)
    const errors = (e as { errors?: unknown }).errors
    if (Array.isArray(errors) && errors.some((x) => isDependencyDown(x))) return true
  }
  return false
}
