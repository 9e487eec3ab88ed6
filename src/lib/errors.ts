/**
 * One error type for everything the API answers on purpose. The error handler turns it into
 * `{ statusCode, error, message, code }`; anything else is a bug and becomes a 500 that hides internals.
 */
import { STATUS_CODES } from 'node:http'

export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message)
    this.name = 'AppError'
  }
}

export const badRequest = (code: string, message: string, details?: Record<string, unknown>) => new AppError(400, code, message, details)
export const unauthorized = (code = 'UNAUTHENTICATED', message = 'Authentication required') => new AppError(401, code, message)
export const paymentRequired = (code: string, message: string) => new AppError(402, code, message)
export const forbidden = (code: string, message: string, details?: Record<string, unknown>) => new AppError(403, code, message, details)
export const notFound = (code: string, message: string) => new AppError(404, code, message)
export const conflict = (code: string, message: string) => new AppError(409, code, message)
export const unavailable = (code: string, message: string) => new AppError(503, code, message)

export function errorBody(statusCode: number, code: string, message: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, code }
}

/** Postgres SQLSTATEs we branch on. */
export const PG = {
  uniqueViolation: '23505',
  duplicateDatabase: '42P04',
  invalidCatalogName: '3D000',
  tooManyConnections: '53300',
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
