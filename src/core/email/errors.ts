/**
 * Errors of the email module. They are AppErrors with stable codes so an API route can answer them,
 * and `isPermanentEmailError` tells the job layer which failures a retry can never fix.
 */
import { AppError } from '../lib/errors.js'

export const EMAIL_ERRORS = {
  /** The message payload (to, template, variables, replyTo) failed EmailMessageSchema. */
  messageInvalid: 'EMAIL_MESSAGE_INVALID',
  /** A template name that is not a plain file name (path traversal, slashes, dots). */
  templateNameInvalid: 'EMAIL_TEMPLATE_NAME_INVALID',
  templateNotFound: 'EMAIL_TEMPLATE_NOT_FOUND',
  /** The template file itself is malformed (no front-matter, no subject). */
  templateInvalid: 'EMAIL_TEMPLATE_INVALID',
  /** Placeholders without a value; `details.missing` lists them. */
  variablesMissing: 'EMAIL_VARIABLES_MISSING',
  /** A value used as a link target is not an http(s) or mailto URL. */
  unsafeUrl: 'EMAIL_UNSAFE_URL',
} as const

const CODES = new Set<string>(Object.values(EMAIL_ERRORS))

export type EmailErrorCode = (typeof EMAIL_ERRORS)[keyof typeof EMAIL_ERRORS]

export const emailError = (statusCode: number, code: EmailErrorCode, message: string, details?: Record<string, unknown>) =>
  new AppError(statusCode, code, message, details)

/**
 * True when sending again cannot succeed: our own validation and template errors, and SMTP 5xx replies
 * (e.g. 550 mailbox unavailable). Connection errors and SMTP 4xx replies are transient.
 */
export function isPermanentEmailError(err: unknown): boolean {
  if (err instanceof AppError) return CODES.has(err.code)
  if (typeof err === 'object' && err !== null && 'responseCode' in err) {
    const code = Number((err as { responseCode: unknown }).responseCode)
    return code >= 500 && code < 600
  }
  return false
}
