/** The error codes of billing: plans, checkout, the portal, plan changes, the Stripe webhook, plan gates. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const BILLING_ERROR_CODES = {
  BILLING_DISABLED: { status: 503, description: 'Billing is not configured (no STRIPE_SECRET_KEY)' },
  STRIPE_UNAVAILABLE: { status: 503, description: 'Stripe could not be reached: retry' },
  STRIPE_REQUEST_FAILED: { status: 502, description: 'Stripe refused or failed the request' },
  SUBSCRIPTION_REQUIRED: { status: 402, description: 'This action needs an active subscription' },
  FEATURE_NOT_IN_PLAN: { status: 403, description: 'The tenant’s plan does not include this feature (details.feature, details.plan); for an API key, api_access' },
  PLAN_TIER_TOO_LOW: { status: 403, description: 'The route needs a higher plan (details.minTier, details.tier, details.plan)' },
  LIMIT_REACHED: { status: 403, description: 'The tenant’s plan allows no more of this resource (details.limit, details.resource, details.plan)' },
  UNKNOWN_PLAN: { status: 400, description: 'No plan with this key' },
  INVALID_EXPIRY: { status: 400, description: 'The expiry is not in the future' },
  INVALID_REDIRECT_URL: { status: 400, description: 'A redirect URL is not a URL, or not on this site' },
  PLAN_NOT_FOUND: { status: 404, description: 'No such plan (or it is not active)' },
  PLAN_INTERVAL_UNAVAILABLE: { status: 400, description: 'The plan cannot be bought with this interval' },
  PRICE_NOT_FOR_SALE: { status: 400, description: 'The price is not for sale as a one-time purchase' },
  INVALID_PRICE: { status: 400, description: 'Not a Stripe price id' },
  INVALID_QUANTITY: { status: 400, description: 'The quantity must be an integer between 1 and 999' },
  ALREADY_SUBSCRIBED: { status: 409, description: 'The tenant has a subscription already: change its plan instead' },
  ALREADY_ON_PLAN: { status: 409, description: 'The subscription is on this plan and interval already' },
  NO_SUBSCRIPTION: { status: 404, description: 'The tenant has no subscription' },
  NO_BILLING_ACCOUNT: { status: 409, description: 'The tenant has no billing account yet: start a checkout first' },
  NO_PLAN_ITEM: { status: 409, description: 'No item of the subscription belongs to a known plan' },
  SUBSCRIPTION_HAS_NO_ITEMS: { status: 409, description: 'The subscription has no items' },
  INVALID_CHECKOUT_SESSION: { status: 400, description: 'Not a Checkout session id' },
  CHECKOUT_SESSION_NOT_FOUND: { status: 404, description: 'No such Checkout session' },
  NOT_A_SUBSCRIPTION_CHECKOUT: { status: 400, description: 'The Checkout session is not for a subscription' },
  CHECKOUT_TENANT_MISMATCH: { status: 403, description: 'The Checkout session belongs to another tenant' },
  CHECKOUT_NOT_COMPLETE: { status: 409, description: 'The Checkout session is not complete yet' },
  INVALID_SIGNATURE: { status: 400, description: 'The webhook’s Stripe-Signature is missing or does not verify' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof BILLING_ERROR_CODES> {}
}
