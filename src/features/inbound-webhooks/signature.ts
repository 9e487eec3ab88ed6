/**
 * HMAC-SHA256 signatures of inbound webhooks, the scheme most providers use (GitHub's X-Hub-Signature-256,
 * Shopify, Slack, Paddle…): the provider signs the raw body (optionally with a timestamp) with a shared
 * secret and sends the digest in a header, as hex or base64, sometimes after a prefix such as `sha256=`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface HmacScheme {
  /** The digest's text form in the header. */
  encoding: 'hex' | 'base64'
  /** What precedes the digest in the header (GitHub: 'sha256='); '' for none. */
  prefix?: string
  /**
   * When the provider signs a timestamp too: how long (seconds) a delivery stays acceptable either side of
   * now (replays of an old delivery are refused). Default 300.
   */
  toleranceS?: number
  /** The signed bytes when a timestamp is signed (default `${timestamp}.${body}`, as Stripe and Standard Webhooks do). */
  signedContent?: (timestamp: string, body: Buffer) => Buffer
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string }

const defaultSignedContent = (timestamp: string, body: Buffer) => Buffer.concat([Buffer.from(`${timestamp}.`), body])

/**
 * Checks `header` against HMAC-SHA256(secret, signed content). Never throws; says why a check failed
 * (for the log, not for the caller: the route answers one code whatever the reason). The comparison is
 * timing-safe, and a header of the wrong length fails before it.
 */
export function verifyHmacSignature(
  scheme: HmacScheme,
  input: { secret: string; body: Buffer; header: string | undefined; timestamp?: string | undefined; now?: Date },
): SignatureCheck {
  const { header, body, secret } = input
  if (!header) return { ok: false, reason: 'no signature header' }
  const prefix = scheme.prefix ?? ''
  if (!header.startsWith(prefix)) return { ok: false, reason: `the signature does not start with "${prefix}"` }
  let signed = body
  if (input.timestamp !== undefined || scheme.toleranceS !== undefined || scheme.signedContent) {
    const ts = input.timestamp
    if (!ts || !/^\d{1,12}$/.test(ts)) return { ok: false, reason: 'no valid timestamp header' }
    const skewS = Math.abs((input.now ?? new Date()).getTime() / 1000 - Number(ts))
    if (skewS > (scheme.toleranceS ?? 300)) return { ok: false, reason: `the timestamp is ${Math.round(skewS)} s away from now` }
    signed = (scheme.signedContent ?? defaultSignedContent)(ts, body)
  }
  const expected = createHmac('sha256', secret).update(signed).digest()
  const given = Buffer.from(header.slice(prefix.length).trim(), scheme.encoding)
  // Buffer.from skips characters that aren't hex/base64, so a malformed header decodes short and fails here.
  if (given.length !== expected.length) return { ok: false, reason: 'the signature has the wrong length' }
  return timingSafeEqual(given, expected) ? { ok: true } : { ok: false, reason: 'the signature does not match' }
}

/** The header a provider would send for `body` (tests, and replaying a delivery by hand). */
export function signHmac(scheme: HmacScheme, secret: string, body: Buffer | string, timestamp?: string): string {
  const raw = typeof body === 'string' ? Buffer.from(body) : body
  const signed = timestamp === undefined ? raw : (scheme.signedContent ?? defaultSignedContent)(timestamp, raw)
  return `${scheme.prefix ?? ''}${createHmac('sha256', secret).update(signed).digest(scheme.encoding)}`
}
