/**
 * What a Stripe webhook body must be before it is applied. The signature proves Stripe sent the bytes,
 * not that they fit the code: a signed body that is not JSON is 400 INVALID_BODY (not a bad
 * signature), and a signed event of an unusable shape (`"data": null`, `"created": "abc"`, a NUL
 * Postgres can't store) is recorded `failed` in the ledger and answered 200: a retry can't help,
 * and a 5xx would make Stripe retry it for days.
 */
import { createHash } from 'node:crypto'
import { sql } from 'drizzle-orm'
import type postgres from 'postgres'
import type Stripe from 'stripe'
import { stripeWebhookEvents } from '../../../drizzle/host/schema.js'
import { hostDbOn } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'

export class UnusableEvent extends Error {
  constructor(
    readonly reason: string,
    readonly eventId: string,
    readonly eventType: string,
  ) {
    super(reason)
    this.name = 'UnusableEvent'
  }
}

const EVENT_ID = /^evt_[A-Za-z0-9_]{1,250}$/
const EVENT_TYPE = /^[a-z0-9_]+(\.[a-z0-9_]+){1,5}$/
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A NUL anywhere (key or value): Postgres' jsonb refuses it (22P05). */
function hasNul(v: unknown, depth = 0): boolean {
  if (depth > 64) return true
  if (typeof v === 'string') return v.includes('\u0000')
  if (Array.isArray(v)) return v.some((x) => hasNul(x, depth + 1))
  if (isObject(v)) return Object.entries(v).some(([k, x]) => k.includes('\u0000') || hasNul(x, depth + 1))
  return false
}

/** Parse verified bytes into an event, or say why it can't be applied (UnusableEvent) or isn't JSON (400). */
export function parseVerifiedEvent(raw: string): Stripe.Event {
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    throw new AppError(400, 'INVALID_BODY', 'The webhook body is not JSON')
  }
  const e = isObject(parsed) ? parsed : {}
  const id = typeof e.id === 'string' && EVENT_ID.test(e.id) ? e.id : undefined
  const type = typeof e.type === 'string' && EVENT_TYPE.test(e.type) ? e.type : undefined
  const unusable = (reason: string) =>
    new UnusableEvent(reason, id ?? `unusable_${createHash('sha256').update(raw).digest('hex').slice(0, 32)}`, type ?? 'unknown')
  if (!isObject(parsed)) throw unusable('event is not an object')
  if (!id) throw unusable('event id missing or malformed')
  if (!type) throw unusable('event type missing or malformed')
  if (!Number.isSafeInteger(e.created) || (e.created as number) <= 0) throw unusable('event created is not a timestamp')
  if (e.api_version !== undefined && e.api_version !== null && typeof e.api_version !== 'string') throw unusable('event api_version is not a string')
  if (!isObject(e.data) || !isObject(e.data.object)) throw unusable('event data.object is not an object')
  if (hasNul(parsed)) throw unusable('event contains a NUL character')
  return parsed as unknown as Stripe.Event
}

/** Record an unusable event `failed` (once per id), keeping a digest of the body rather than the body. */
export async function recordUnusableEvent(client: postgres.Sql, raw: string, e: UnusableEvent): Promise<void> {
  const payload = { unusable: true, sha256: createHash('sha256').update(raw).digest('hex'), bytes: Buffer.byteLength(raw) }
  await hostDbOn(client)
    .insert(stripeWebhookEvents)
    .values({
      stripeEventId: e.eventId,
      type: e.eventType,
      status: 'failed',
      stripeCreatedAt: sql`now()`,
      payload,
      error: e.reason,
      processedAt: sql`now()`,
    })
    .onConflictDoNothing({ target: stripeWebhookEvents.stripeEventId })
}
