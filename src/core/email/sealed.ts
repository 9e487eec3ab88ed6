/**
 * Sealed variables: template values an email job must carry but nothing else may keep, such as a
 * single-use link. A job's payload is stored in plain text (its sys_jobs record, Redis) for as long as
 * the record lives; a token that is "stored only as a hash" would otherwise sit there in full. So the
 * sender seals those values with ENCRYPTION_KEYS (AES-256-GCM, src/core/lib/crypto.ts) into
 * `message.sealedVariables`, and the email job opens them just before rendering.
 */
import { Value } from 'typebox/value'
import { decrypt, encrypt, type KeyRing } from '../lib/crypto.js'
import { EMAIL_ERRORS, emailError } from './errors.js'
import { type EmailMessage, TemplateVariablesSchema } from './message.js'

/** Move the named variables of `message` into its sealed part. */
export function sealVariables(message: EmailMessage, names: readonly string[], keys: readonly KeyRing[]): EmailMessage {
  const plain = { ...message.variables }
  const sealed: Record<string, string | number> = {}
  for (const name of names) {
    if (name in plain) {
      sealed[name] = plain[name]!
      delete plain[name]
    }
  }
  return { ...message, variables: plain, sealedVariables: encrypt(JSON.stringify(sealed), keys) }
}

/** The message with its sealed variables opened into `variables`; a message that can't be opened fails for good. */
export function openSealedVariables(message: EmailMessage, keys: readonly KeyRing[] | undefined): EmailMessage {
  const { sealedVariables, ...rest } = message
  if (sealedVariables === undefined) return message
  let opened: unknown
  try {
    if (!keys?.length) throw new Error('no ENCRYPTION_KEYS to open it with')
    opened = JSON.parse(decrypt(sealedVariables, keys))
  } catch (err) {
    throw emailError(400, EMAIL_ERRORS.messageInvalid, `Invalid email message: sealedVariables do not open (${(err as Error).message})`)
  }
  if (!Value.Check(TemplateVariablesSchema, opened)) {
    throw emailError(400, EMAIL_ERRORS.messageInvalid, 'Invalid email message: sealedVariables are not template variables')
  }
  return { ...rest, variables: { ...rest.variables, ...opened } }
}
