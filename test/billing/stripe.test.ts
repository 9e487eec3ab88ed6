/**
 * The Stripe client factory: API host parsing, the pinned API version on the wire (seen by the fake
 * Stripe), retries off by option, and 503 BILLING_DISABLED without settings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiHostOptions, createStripe, STRIPE_API_VERSION } from '../../src/features/billing/stripe.js'
import { type FakeStripe, startFakeStripe } from '../helpers/fake-stripe.js'

let fake: FakeStripe
beforeAll(async () => {
  fake = await startFakeStripe()
})
afterAll(async () => {
  await fake?.close()
})

const settings = (apiHost?: string) => ({
  secretKey: 'sk_test_abc',
  webhookSecret: 'whsec_x',
  baseUrl: 'http://localhost:3000',
  apiHost,
  monthlyPriceId: undefined,
  yearlyPriceId: undefined,
  oneTimePriceIds: [],
})

describe('createStripe', () => {
  it('parses STRIPE_API_HOST', () => {
    expect(apiHostOptions('http://127.0.0.1:12111')).toEqual({ host: '127.0.0.1', port: 12111, protocol: 'http' })
    expect(apiHostOptions('https://stripe.internal')).toEqual({ host: 'stripe.internal', port: 443, protocol: 'https' })
    expect(apiHostOptions('localhost:8080')).toEqual({ host: 'localhost', port: 8080, protocol: 'https' })
    expect(() => apiHostOptions('ftp://x')).toThrow(/http or https/)
  })

  it('talks to the configured host with the pinned API version', async () => {
    const stripe = createStripe(settings(fake.url), { maxNetworkRetries: 0 })
    const customer = await stripe.customers.create({ email: 'a@example.test' })
    expect(customer.id).toMatch(/^cus_/)
    expect(fake.requests.at(-1)).toMatchObject({
      method: 'POST',
      path: '/v1/customers',
      stripeVersion: STRIPE_API_VERSION,
      params: { email: 'a@example.test' },
    })
    expect(STRIPE_API_VERSION).toBe('2026-10-28.endive')
  })

  it('with retries off, a 500 surfaces at once as a transient Stripe error', async () => {
    const stripe = createStripe(settings(fake.url), { maxNetworkRetries: 0 })
    fake.fail('GET', /^\/v1\/subscriptions\//, { status: 500 })
    const before = fake.count('GET', '/v1/subscriptions/')
    await expect(stripe.subscriptions.retrieve('sub_x')).rejects.toMatchObject({ type: 'StripeAPIError', statusCode: 500 })
    expect(fake.count('GET', '/v1/subscriptions/')).toBe(before + 1)
  })

  it('a wrong key is an authentication error', async () => {
    const stripe = createStripe({ ...settings(fake.url), secretKey: 'rk_live_nope' }, { maxNetworkRetries: 0 })
    await expect(stripe.customers.retrieve('cus_x')).rejects.toMatchObject({ type: 'StripeAuthenticationError' })
  })

  it('without settings: 503 BILLING_DISABLED', () => {
    expect(() => createStripe(undefined)).toThrow(expect.objectContaining({ statusCode: 503, code: 'BILLING_DISABLED' }))
  })
})
