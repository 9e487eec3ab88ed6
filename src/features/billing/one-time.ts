/**
 * One-time purchases (Checkout in `payment` mode): what may be sold, and how a session says what was bought.
 *
 * Sellable: a price listed in STRIPE_ONE_TIME_PRICES, or a price of a known plan (active or not, as the
 * webhooks look plans up). Checkout creation refuses anything else (400 PRICE_NOT_FOR_SALE), and the
 * webhook checks again before fulfilling: a session whose price is not sellable when its payment arrives
 * is recorded `failed` and not fulfilled (see webhooks.ts).
 *
 * Stripe's checkout events do not carry the line items (they are not expanded in webhooks), so the
 * session's metadata says what was bought: `price_id` and `quantity`, written by createOneTimeCheckout.
 * Only a holder of the secret key can write metadata. A payment-mode session without them (a Payment
 * Link, a session made in the dashboard) is not fulfilled either.
 */
import type { RawSql } from '../../core/db/host.js'
import type { PlanLookup } from './subscriptions.js'

export const PRICE_ID = /^price_[A-Za-z0-9_]+$/

export async function isSellableOnce(
  db: RawSql,
  priceId: string,
  configured: readonly string[],
  plans: PlanLookup,
): Promise<boolean> {
  if (!PRICE_ID.test(priceId)) return false
  if (configured.includes(priceId)) return true
  return (await plans(db, priceId)) !== null
}

/** The metadata createOneTimeCheckout writes on the session (and its payment intent). */
export function purchaseMetadata(a: { tenantId: string; userId: string; priceId: string; quantity: number }): Record<string, string> {
  return { tenant_id: a.tenantId, user_id: a.userId, price_id: a.priceId, quantity: String(a.quantity) }
}

/** What a session's metadata says was bought, or null when it doesn't say. */
export function purchaseOf(metadata: Record<string, string> | null | undefined): { priceId: string; quantity: number } | null {
  const priceId = metadata?.price_id
  const quantity = Number(metadata?.quantity)
  if (!priceId || !PRICE_ID.test(priceId) || !Number.isSafeInteger(quantity) || quantity < 1) return null
  return { priceId, quantity }
}
