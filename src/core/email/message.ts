/**
 * One email as a plain, serialisable payload: what an email job carries and what `sendEmail` takes.
 * The job layer validates job payloads against EmailMessageSchema at submit time and again when processing.
 */
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { EMAIL_ERRORS, emailError } from './errors.js'

export const EmailAddress = Type.String({ format: 'email', maxLength: 254 })
/** Placeholder names to string or number values; other keys and value types are rejected. */
export const TemplateVariablesSchema = Type.Record(
  Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }),
  Type.Union([Type.String(), Type.Number()]),
  {
    additionalProperties: false,
  },
)

export const EmailMessageSchema = Type.Object(
  {
    to: EmailAddress,
    /** Template name, e.g. "welcome" (a trailing ".md" is accepted). */
    template: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(\\.md)?$' }),
    variables: TemplateVariablesSchema,
    replyTo: Type.Optional(EmailAddress),
    /** Variables sealed with ENCRYPTION_KEYS (src/core/email/sealed.ts): opened only when the email job renders the mail. */
    sealedVariables: Type.Optional(Type.String({ minLength: 1, maxLength: 16_384 })),
  },
  { additionalProperties: false },
)
export type EmailMessage = Static<typeof EmailMessageSchema>

/** Throws EMAIL_MESSAGE_INVALID (400) naming the first bad field. */
export function assertEmailMessage(message: unknown): asserts message is EmailMessage {
  if (Value.Check(EmailMessageSchema, message)) return
  const first = [...Value.Errors(EmailMessageSchema, message)][0]
  const where = first?.instancePath || '/'
  throw emailError(400, EMAIL_ERRORS.messageInvalid, `Invalid email message: ${where} ${first?.message ?? 'is invalid'}`, { path: where })
}
