/**
 * The Stripe client. The API version is pinned to the SDK's own default (events and objects keep the
 * shape the SDK's types describe); STRIPE_API_HOST points the real SDK at another server (tests run a
 * local fake Stripe). Billing is optional: without STRIPE_SECRET_KEY every billing call answers 503.
 */
import Stripe from 'stripe'
import type { Config } from '../../core/config.js'
import { AppError } from '../../core/lib/errors.js'

export type StripeSettings = NonNullable<Config['stripe']>
export type StripeClient = Stripe
export { Stripe }

/** The API version every request and every webhook endpoint of this kit uses. */
export const STRIPE_API_VERSION = Stripe.API_VERSION

export interface CreateStripeOptions {
  /** Retries of idempotent-safe requests on network errors and 5xx/429 (the SDK adds idempotency keys). Tests pass 0. */
  maxNetworkRetries?: number
  /** Per-request timeout. No Stripe call runs inside a host transaction (webhooks refetch before theirs). */
  timeoutMs?: number
}

export function billingDisabled(): AppError {
  return new AppError(503, 'BILLING_DISABLED', 'Billing is not configured on this server')
}

/** The Stripe settings, or 503 BILLING_DISABLED: the first line of every billing entry point. */
export function requireStripeSettings(settings: StripeSettings | undefined): StripeSettings {
  if (!settings) throw billingDisabled()
  return settings
}

/** Parse STRIPE_API_HOST (`http(s)://host:port`, a bare `host:port` means https) into SDK options. */
export function apiHostOptions(apiHost: string): { host: string; port: number; protocol: 'http' | 'https' } {
  let url: URL
  try {
    url = new URL(/^[a-z]+:\/\//i.test(apiHost) ? apiHost : `https://${apiHost}`)
  } catch {
    throw new Error(`STRIPE_API_HOST must look like http(s)://host:port, got "${apiHost}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`STRIPE_API_HOST must be http or https, got "${apiHost}"`)
  const protocol = url.protocol === 'http:' ? 'http' : 'https'
  return { host: url.hostname, port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443, protocol }
}

export function createStripe(settings: StripeSettings | undefined, opts: CreateStripeOptions = {}): Stripe {
  const s = requireStripeSettings(settings)
  return new Stripe(s.secretKey, {
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: opts.maxNetworkRetries ?? 2,
    timeout: opts.timeoutMs ?? 20_000,
    telemetry: false,
    appInfo: { name: 'tenantkit' },
    ...(s.apiHost ? apiHostOptions(s.apiHost) : {}),
  })
}

/** Stripe failures a retry can fix (network, Stripe 5xx, rate limit) as opposed to our request being wrong. */
export function isTransientStripeError(err: unknown): boolean {
  if (!(err instanceof Stripe.errors.StripeError)) return false
  if (err instanceof Stripe.errors.StripeConnectionError || err instanceof Stripe.errors.StripeAPIError) return true
  if (err instanceof Stripe.errors.StripeRateLimitError) return true
  return (err.statusCode ?? 0) >= 500
}

/** Map a Stripe API failure to what our API answers: 503 when retrying can help, 502 otherwise. Other errors pass through. */
export function stripeFailure(err: unknown): unknown {
  if (!(err instanceof Stripe.errors.StripeError)) return err
  if (isTransientStripeError(err)) return new AppError(503, 'STRIPE_UNAVAILABLE', 'Stripe is unavailable, try again shortly')
  return new AppError(502, 'STRIPE_REQUEST_FAILED', `Stripe rejected the request: ${err.message}`, { stripeCode: err.code ?? err.type })
}
