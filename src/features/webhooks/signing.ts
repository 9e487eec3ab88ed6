/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): headers webhook-id, webhook-timestamp
 * (Unix seconds) and webhook-signature `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the key
 * being the base64 part of the endpoint's `whsec_…` secret. Receivers verify with any Standard Webhooks
 * library (the tests use the `standardwebhooks` npm package).
 */
import { createHmac, randomBytes } from 'node:crypto'

/** A new endpoint secret: `whsec_` + base64 of 24 random bytes (Standard Webhooks allows 24–64). */
export const newEndpointSecret = () => `whsec_${randomBytes(24).toString('base64')}`

export function standardWebhookHeaders(secret: string, msgId: string, body: string, at: Date = new Date()): Record<string, string> {
  const timestamp = String(Math.floor(at.getTime() / 1000))
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
  const signature = createHmac('sha256', key).update(`${msgId}.${timestamp}.${body}`).digest('base64')
  return { 'webhook-id': msgId, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` }
}
