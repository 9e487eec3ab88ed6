/**
 * A local fake Stripe API (node:http on 127.0.0.1:0) that the REAL `stripe` SDK talks to
 * (`STRIPE_API_HOST=fake.url`): form-encoded requests, Stripe-shaped JSON objects and errors, stateful
 * customers, prices, checkout sessions, subscriptions and portal sessions. Tests drive Stripe's side
 * (complete a checkout, move a subscription, fail requests) and count what the SDK asked for.
 * Covers only what the kit uses; anything else answers Stripe's 404 "Unrecognized request URL".
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Stripe from 'stripe'

type Obj = Record<string, unknown>
// biome-ignore lint/suspicious/noExplicitAny: Stripe-shaped objects are built loosely and read back by tests.
export type StripeObject = Record<string, any>

export interface RecordedRequest {
  method: string
  path: string
  params: Obj
  idempotencyKey: string | undefined
  stripeVersion: string | undefined
}

export interface FailureRule {
  method: string
  path: RegExp
  status: number
  type: string
  remaining: number
}

const rid = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`

/** `a[b][0][c]=v` → { a: { b: [ { c: 'v' } ] } }: Stripe's (and the SDK's) form encoding. */
export function parseStripeForm(body: string): Obj {
  const root: Obj = {}
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.split(/\[|\]\[|\]/).filter((p) => p !== '')
    let node: Obj = root
    parts.forEach((part, i) => {
      if (i === parts.length - 1) {
        node[part] = value
        return
      }
      node[part] ??= {}
      node = node[part] as Obj
    })
  }
  return arraysFromIndexes(root) as Obj
}

function arraysFromIndexes(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v
  const o = v as Obj
  const keys = Object.keys(o)
  const mapped = Object.fromEntries(keys.map((k) => [k, arraysFromIndexes(o[k])]))
  if (keys.length > 0 && keys.every((k) => /^\d+$/.test(k))) return keys.sort((a, b) => Number(a) - Number(b)).map((k) => mapped[k])
  return mapped
}

const bool = (v: unknown) => v === true || v === 'true'
const int = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v))

class StripeHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Obj,
  ) {
    super(String((body.error as Obj)?.message))
  }
}

const missing = (kind: string, id: string, param = 'id') =>
  new StripeHttpError(404, {
    error: {
      code: 'resource_missing',
      doc_url: 'https://stripe.com/docs/error-codes/resource-missing',
      message: `No such ${kind}: '${id}'`,
      param,
      type: 'invalid_request_error',
    },
  })
const invalid = (message: string, param?: string) => new StripeHttpError(400, { error: { message, param, type: 'invalid_request_error' } })

export interface Hold {
  reached: Promise<void>
  release(): void
}

export interface FakeStripe {
  /** `http://127.0.0.1:PORT`: pass as STRIPE_API_HOST. */
  url: string
  /** Fake Stripe time (unix seconds); objects and events are stamped with it. Tests move it. */
  now: number
  requests: RecordedRequest[]
  customers: Map<string, StripeObject>
  prices: Map<string, StripeObject>
  sessions: Map<string, StripeObject>
  subscriptions: Map<string, StripeObject>
  portalSessions: Map<string, StripeObject>
  /** Requests matching method and path (a string is a path prefix). */
  count(method: string, path: string | RegExp): number
  addPrice(p: { id: string; unitAmount: number; currency?: string; interval?: 'month' | 'year' | null; product?: string }): StripeObject
  createCustomer(p?: { email?: string; metadata?: Record<string, string> }): StripeObject
  createSubscription(p: {
    customer: string
    price: string
    status?: string
    trialDays?: number
    metadata?: Record<string, string>
    id?: string
  }): StripeObject
  /** Move a subscription as Stripe would (status, cancel flags, price, period). */
  setSubscription(id: string, patch: StripeObject & { price?: string; periodStart?: number; periodEnd?: number }): StripeObject
  /** The customer pays (or starts the trial): the session completes and, in subscription mode, a subscription is created. */
  completeCheckout(sessionId: string): { session: StripeObject; subscription: StripeObject | null }
  /** The next `times` requests matching fail with `status` (500 → StripeAPIError, 429 → rate limit). */
  fail(method: string, path: RegExp, opts?: { status?: number; times?: number; type?: string }): void
  /**
   * Hold the next request matching method and path until `release()` (a slow Stripe): `reached` resolves
   * once the request arrived and is being held, so a test can look at the world while the caller waits.
   */
  hold(method: string, path: RegExp): Hold
  /** A Stripe-shaped event (id evt_…, object 'event', pinned api_version) around a snapshot of `object`. */
  event(type: string, object: StripeObject, opts?: { created?: number; previousAttributes?: StripeObject }): StripeObject
  close(): Promise<void>
}

export async function startFakeStripe(opts: { apiKeyPrefix?: string } = {}): Promise<FakeStripe> {
  const keyPrefix = opts.apiKeyPrefix ?? 'sk_test_'
  const requests: RecordedRequest[] = []
  const failures: FailureRule[] = []
  const holds: { method: string; path: RegExp; arrived: () => void; released: Promise<void> }[] = []
  const idempotent = new Map<string, { status: number; body: Obj }>()
  const customers = new Map<string, StripeObject>()
  const prices = new Map<string, StripeObject>()
  const sessions = new Map<string, StripeObject>()
  const subscriptions = new Map<string, StripeObject>()
  const portalSessions = new Map<string, StripeObject>()

  const fake = {} as FakeStripe
  const clone = <T>(o: T): T => structuredClone(o)

  function priceObject(id: string): StripeObject {
    const p = prices.get(id)
    if (!p) throw invalid(`No such price: '${id}'`, 'line_items[0][price]')
    return p
  }

  function createCustomer(p: { email?: string; name?: string; metadata?: Record<string, string> } = {}): StripeObject {
    const c = {
      id: rid('cus'),
      object: 'customer',
      address: null,
      balance: 0,
      created: fake.now,
      currency: null,
      default_source: null,
      delinquent: false,
      description: null,
      email: p.email ?? null,
      invoice_prefix: randomBytes(4).toString('hex').toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata: p.metadata ?? {},
      name: p.name ?? null,
      phone: null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: 'none',
      test_clock: null,
    }
    customers.set(c.id, c)
    return c
  }

  function createSubscription(p: {
    customer: string
    price: string
    status?: string
    trialDays?: number
    metadata?: Record<string, string>
    id?: string
  }) {
    const price = priceObject(p.price)
    const id = p.id ?? rid('sub')
    const days = price.recurring?.interval === 'year' ? 365 : 30
    const trialEnd = p.trialDays ? fake.now + p.trialDays * 86400 : null
    const periodEnd = trialEnd ?? fake.now + days * 86400
    const sub = {
      id,
      object: 'subscription',
      application: null,
      application_fee_percent: null,
      automatic_tax: { disabled_reason: null, enabled: false, liability: null },
      billing_cycle_anchor: periodEnd,
      billing_cycle_anchor_config: null,
      billing_mode: { flexible: null, type: 'classic' },
      billing_thresholds: null,
      cancel_at: null,
      cancel_at_period_end: false,
      canceled_at: null,
      cancellation_details: { comment: null, feedback: null, reason: null },
      collection_method: 'charge_automatically',
      created: fake.now,
      currency: price.currency,
      customer: p.customer,
      customer_account: null,
      days_until_due: null,
      default_payment_method: null,
      default_source: null,
      default_tax_rates: [],
      description: null,
      discounts: [],
      ended_at: null,
      invoice_settings: { account_tax_ids: null, issuer: { type: 'self' } },
      items: {
        object: 'list',
        data: [
          {
            id: rid('si'),
            object: 'subscription_item',
            billing_thresholds: null,
            created: fake.now,
            current_period_end: periodEnd,
            current_period_start: fake.now,
            discounts: [],
            metadata: {},
            plan: null,
            price: clone(price),
            quantity: 1,
            subscription: id,
            tax_rates: [],
          },
        ],
        has_more: false,
        total_count: 1,
        url: `/v1/subscription_items?subscription=${id}`,
      },
      latest_invoice: rid('in'),
      livemode: false,
      metadata: p.metadata ?? {},
      next_pending_invoice_item_invoice: null,
      on_behalf_of: null,
      pause_collection: null,
      payment_settings: { payment_method_options: null, payment_method_types: null, save_default_payment_method: 'off' },
      pending_invoice_item_interval: null,
      pending_setup_intent: null,
      pending_update: null,
      schedule: null,
      start_date: fake.now,
      status: p.status ?? (trialEnd ? 'trialing' : 'active'),
      test_clock: null,
      transfer_data: null,
      trial_end: trialEnd,
      trial_settings: { end_behavior: { missing_payment_method: 'create_invoice' } },
      trial_start: trialEnd ? fake.now : null,
    }
    subscriptions.set(id, sub)
    return sub
  }

  function setSubscription(id: string, patch: StripeObject & { price?: string; periodStart?: number; periodEnd?: number }) {
    const sub = subscriptions.get(id)
    if (!sub) throw new Error(`fake stripe: no subscription ${id}`)
    const { price, periodStart, periodEnd, ...rest } = patch
    Object.assign(sub, rest)
    const item = sub.items.data[0]
    if (price) item.price = clone(priceObject(price))
    if (periodStart !== undefined) item.current_period_start = periodStart
    if (periodEnd !== undefined) item.current_period_end = periodEnd
    return sub
  }

  function createSession(params: Obj): StripeObject {
    const mode = params.mode as string | undefined
    if (!mode || !['subscription', 'payment', 'setup'].includes(mode)) throw invalid('Missing required param: mode.', 'mode')
    if (!params.success_url) throw invalid('Missing required param: success_url.', 'success_url')
    const lineItems = (params.line_items as Obj[] | undefined) ?? []
    if (lineItems.length === 0) throw invalid('Missing required param: line_items.', 'line_items')
    let amount = 0
    for (const li of lineItems) {
      const price = priceObject(String(li.price))
      if (mode === 'subscription' && !price.recurring)
        throw invalid('You must provide at least one recurring price in `subscription` mode.', 'line_items')
      if (mode === 'payment' && price.recurring) throw invalid('You specified `payment` mode but passed a recurring price.', 'line_items')
      amount += price.unit_amount * (int(li.quantity) ?? 1)
    }
    if (params.customer && !customers.has(String(params.customer))) throw missing('customer', String(params.customer), 'customer')
    const id = `cs_test_${randomBytes(24).toString('base64url').replace(/[-_]/g, 'a')}`
    const session = {
      id,
      object: 'checkout.session',
      after_expiration: null,
      allow_promotion_codes: bool(params.allow_promotion_codes),
      amount_subtotal: amount,
      amount_total: amount,
      automatic_tax: { enabled: false, liability: null, status: null },
      billing_address_collection: null,
      cancel_url: params.cancel_url ?? null,
      client_reference_id: params.client_reference_id ?? null,
      created: fake.now,
      currency: priceObject(String(lineItems[0]!.price)).currency,
      customer: params.customer ?? null,
      customer_creation: params.customer ? null : 'always',
      customer_email: params.customer_email ?? null,
      expires_at: fake.now + 86400,
      invoice: null,
      livemode: false,
      locale: null,
      metadata: params.metadata ?? {},
      mode,
      payment_intent: null,
      payment_method_types: ['card'],
      payment_status: 'unpaid',
      status: 'open',
      submit_type: null,
      subscription: null,
      success_url: params.success_url,
      total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
      ui_mode: 'hosted',
      url: `https://checkout.stripe.com/c/pay/${id}`,
      // Not on real sessions: what was asked for, so tests can check it.
      _params: params,
    }
    sessions.set(id, session)
    return session
  }

  function completeCheckout(sessionId: string) {
    const s = sessions.get(sessionId)
    if (!s) throw new Error(`fake stripe: no checkout session ${sessionId}`)
    const params = s._params as Obj
    if (!s.customer) s.customer = createCustomer({ email: s.customer_email ?? undefined }).id
    let subscription: StripeObject | null = null
    if (s.mode === 'subscription') {
      const data = (params.subscription_data as Obj | undefined) ?? {}
      const li = (params.line_items as Obj[])[0]!
      subscription = createSubscription({
        customer: s.customer,
        price: String(li.price),
        trialDays: int(data.trial_period_days),
        metadata: (data.metadata as Record<string, string>) ?? {},
      })
      s.subscription = subscription.id
      s.payment_status = subscription.status === 'trialing' ? 'no_payment_required' : 'paid'
    } else {
      s.payment_intent = rid('pi')
      s.payment_status = 'paid'
    }
    s.status = 'complete'
    return { session: s, subscription }
  }

  const publicSession = (s: StripeObject) => {
    const { _params, ...rest } = s
    return rest
  }

  type Handler = (m: RegExpExecArray, params: Obj) => Obj | Promise<Obj>
  const routes: [string, RegExp, Handler][] = [
    [
      'POST',
      /^\/v1\/customers$/,
      (_m, p) => createCustomer({ email: p.email as string, name: p.name as string, metadata: p.metadata as Record<string, string> }),
    ],
    [
      'GET',
      /^\/v1\/customers\/([^/]+)$/,
      (m) => {
        const c = customers.get(m[1]!)
        if (!c) throw missing('customer', m[1]!)
        return c
      },
    ],
    [
      'GET',
      /^\/v1\/prices\/([^/]+)$/,
      (m) => {
        const p = prices.get(m[1]!)
        if (!p) throw missing('price', m[1]!)
        return p
      },
    ],
    ['POST', /^\/v1\/checkout\/sessions$/, (_m, p) => publicSession(createSession(p))],
    [
      'GET',
      /^\/v1\/checkout\/sessions\/([^/]+)$/,
      (m) => {
        const s = sessions.get(m[1]!)
        if (!s) throw missing('checkout.session', m[1]!)
        return publicSession(s)
      },
    ],
    [
      'POST',
      /^\/v1\/billing_portal\/sessions$/,
      (_m, p) => {
        if (!p.customer) throw invalid('Missing required param: customer.', 'customer')
        if (!customers.has(String(p.customer))) throw missing('customer', String(p.customer), 'customer')
        const id = rid('bps')
        const s = {
          id,
          object: 'billing_portal.session',
          configuration: rid('bpc'),
          created: fake.now,
          customer: p.customer,
          flow: null,
          livemode: false,
          locale: null,
          on_behalf_of: null,
          return_url: p.return_url ?? null,
          url: `https://billing.stripe.com/p/session/test_${id}`,
        }
        portalSessions.set(id, s)
        return s
      },
    ],
    [
      'GET',
      /^\/v1\/subscriptions\/([^/]+)$/,
      (m) => {
        const s = subscriptions.get(m[1]!)
        if (!s) throw missing('subscription', m[1]!)
        return s
      },
    ],
    [
      'POST',
      /^\/v1\/subscriptions\/([^/]+)$/,
      (m, p) => {
        const s = subscriptions.get(m[1]!)
        if (!s) throw missing('subscription', m[1]!)
        if (s.status === 'canceled') throw invalid('A canceled subscription can only update its cancellation_details and metadata.')
        if (p.cancel_at_period_end !== undefined) {
          s.cancel_at_period_end = bool(p.cancel_at_period_end)
          s.cancel_at = s.cancel_at_period_end ? s.items.data[0].current_period_end : null
          s.canceled_at = s.cancel_at_period_end ? fake.now : null
        }
        const items = p.items as Obj[] | undefined
        if (items?.[0]) {
          const item = s.items.data.find((i: StripeObject) => i.id === items[0]!.id)
          if (!item) throw invalid(`Invalid subscription item: '${String(items[0].id)}'`, 'items[0][id]')
          item.price = clone(priceObject(String(items[0].price)))
        }
        if (p.metadata) s.metadata = { ...s.metadata, ...(p.metadata as Obj) }
        return s
      },
    ],
    [
      'DELETE',
      /^\/v1\/subscriptions\/([^/]+)$/,
      (m) => {
        const s = subscriptions.get(m[1]!)
        if (!s) throw missing('subscription', m[1]!)
        Object.assign(s, { status: 'canceled', canceled_at: fake.now, ended_at: fake.now })
        return s
      },
    ],
  ]

  async function readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }

  function send(res: ServerResponse, status: number, body: Obj) {
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': rid('req'), 'stripe-version': Stripe.API_VERSION })
    res.end(JSON.stringify(body))
  }

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://fake')
      const method = req.method ?? 'GET'
      const raw = method === 'GET' || method === 'DELETE' ? url.searchParams.toString() : await readBody(req)
      const params = parseStripeForm(raw)
      const idempotencyKey = req.headers['idempotency-key'] as string | undefined
      requests.push({
        method,
        path: url.pathname,
        params,
        idempotencyKey,
        stripeVersion: req.headers['stripe-version'] as string | undefined,
      })

      const auth = req.headers.authorization ?? ''
      if (!auth.startsWith(`Bearer ${keyPrefix}`)) {
        return send(res, 401, { error: { message: 'Invalid API Key provided', type: 'invalid_request_error' } })
      }
      const held = holds.findIndex((h) => h.method === method && h.path.test(url.pathname))
      if (held >= 0) {
        const [h] = holds.splice(held, 1)
        h!.arrived()
        await h!.released
      }
      const rule = failures.find((f) => f.method === method && f.path.test(url.pathname) && f.remaining > 0)
      if (rule) {
        rule.remaining--
        return send(res, rule.status, { error: { message: 'An unknown error occurred', type: rule.type } })
      }
      const cacheKey = method === 'POST' && idempotencyKey ? `${url.pathname} ${idempotencyKey}` : undefined
      const cached = cacheKey ? idempotent.get(cacheKey) : undefined
      if (cached) return send(res, cached.status, cached.body)

      for (const [m, pattern, handler] of routes) {
        const match = m === method ? pattern.exec(url.pathname) : null
        if (!match) continue
        const body = clone(await handler(match, params))
        if (cacheKey) idempotent.set(cacheKey, { status: 200, body })
        return send(res, 200, body)
      }
      send(res, 404, { error: { message: `Unrecognized request URL (${method}: ${url.pathname}).`, type: 'invalid_request_error' } })
    } catch (err) {
      if (err instanceof StripeHttpError) return send(res, err.status, err.body)
      send(res, 500, { error: { message: (err as Error).message, type: 'api_error' } })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  Object.assign(fake, {
    url: `http://127.0.0.1:${port}`,
    now: Math.floor(Date.now() / 1000),
    requests,
    customers,
    prices,
    sessions,
    subscriptions,
    portalSessions,
    count: (method: string, path: string | RegExp) =>
      requests.filter((r) => r.method === method && (typeof path === 'string' ? r.path.startsWith(path) : path.test(r.path))).length,
    addPrice(p: { id: string; unitAmount: number; currency?: string; interval?: 'month' | 'year' | null; product?: string }) {
      const price = {
        id: p.id,
        object: 'price',
        active: true,
        billing_scheme: 'per_unit',
        created: fake.now,
        currency: p.currency ?? 'usd',
        custom_unit_amount: null,
        livemode: false,
        lookup_key: null,
        metadata: {},
        nickname: null,
        product: p.product ?? 'prod_Fake',
        recurring:
          p.interval === null
            ? null
            : { interval: p.interval ?? 'month', interval_count: 1, meter: null, trial_period_days: null, usage_type: 'licensed' },
        tax_behavior: 'unspecified',
        tiers_mode: null,
        transform_quantity: null,
        type: p.interval === null ? 'one_time' : 'recurring',
        unit_amount: p.unitAmount,
        unit_amount_decimal: String(p.unitAmount),
      }
      prices.set(p.id, price)
      return price
    },
    createCustomer,
    createSubscription,
    setSubscription,
    completeCheckout,
    fail(method: string, path: RegExp, o: { status?: number; times?: number; type?: string } = {}) {
      failures.push({ method, path, status: o.status ?? 500, type: o.type ?? 'api_error', remaining: o.times ?? 1 })
    },
    hold(method: string, path: RegExp): Hold {
      let arrived!: () => void
      let release!: () => void
      const reached = new Promise<void>((r) => {
        arrived = r
      })
      const released = new Promise<void>((r) => {
        release = r
      })
      holds.push({ method, path, arrived, released })
      return { reached, release }
    },
    event(type: string, object: StripeObject, o: { created?: number; previousAttributes?: StripeObject } = {}) {
      const obj = object.object === 'checkout.session' ? publicSession(object) : object
      return {
        id: rid('evt'),
        object: 'event',
        api_version: Stripe.API_VERSION,
        created: o.created ?? fake.now,
        data: { object: clone(obj), ...(o.previousAttributes ? { previous_attributes: o.previousAttributes } : {}) },
        livemode: false,
        pending_webhooks: 1,
        request: { id: rid('req'), idempotency_key: null },
        type,
      }
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      }),
  })
  server.keepAliveTimeout = 1000
  return fake
}
