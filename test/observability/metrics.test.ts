/**
 * GET /metrics beyond HTTP latency: tenant provisioning durations, job outcomes and queue depth (from the
 * services' registry), Stripe webhook outcomes by type and ledger outcome, and requests per tenant for the
 * METRICS_TOP_TENANTS busiest only, the rest as tenant="other".
 */
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const WEBHOOK_SECRET = 'whsec_metrics_test'
const ctx = useApp({
  METRICS_TOP_TENANTS: '2',
  // Verified locally; the unhandled event type posted here never makes the SDK call Stripe.
  STRIPE_SECRET_KEY: 'sk_test_metrics',
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_HOST: '127.0.0.1',
})

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

async function scrape(): Promise<Sample[]> {
  const res = await ctx.app.inject('/metrics')
  expect(res.statusCode).toBe(200)
  return res.body
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (!m) throw new Error(`unparsable metrics line: ${line}`)
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]))
      return { name: m[1]!, labels, value: Number(m[3]) }
    })
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

let a: TenantFixture
let b: TenantFixture
let c: TenantFixture
let workers: WorkerRuntime | undefined

beforeAll(async () => {
  a = await tenantWith(ctx.app)
  b = await tenantWith(ctx.app)
  c = await tenantWith(ctx.app)
})
afterAll(async () => {
  await workers?.close()
})

describe('GET /metrics', () => {
  it('times tenant provisioning', async () => {
    const samples = await scrape()
    expect(value(samples, 'tenant_provisioning_duration_seconds_count', { mode: 'inline', outcome: 'active' })).toBeGreaterThanOrEqual(3)
    expect(value(samples, 'tenant_provisioning_duration_seconds_sum', { mode: 'inline', outcome: 'active' })).toBeGreaterThan(0)
  })

  it('counts requests for the top N tenants by id and slug, the rest as "other"', async () => {
    for (let i = 0; i < 30; i++) expect((await a.as(a.editor).get('/projects')).statusCode).toBe(200)
    for (let i = 0; i < 20; i++) expect((await b.as(b.editor).get('/projects')).statusCode).toBe(200)
    expect((await c.as(c.editor).get('/projects')).statusCode).toBe(200)
    const samples = (await scrape()).filter((s) => s.name === 'tenant_http_requests_total')
    expect(samples.map((s) => s.labels.tenant).sort()).toEqual([a.id, b.id, 'other'].sort())
    expect(value(samples, 'tenant_http_requests_total', { tenant: a.id, slug: a.slug })).toBeGreaterThanOrEqual(30)
    expect(value(samples, 'tenant_http_requests_total', { tenant: b.id, slug: b.slug })).toBeGreaterThanOrEqual(20)
    expect(value(samples, 'tenant_http_requests_total', { tenant: 'other' })).toBeGreaterThanOrEqual(1)
  })

  it('counts job outcomes by type and reports queue depth', async () => {
    const before = await scrape()
    expect(value(before, 'job_queue_depth', { queue: 'tenant', state: 'waiting' })).toBe(0)
    const job = await ctx.app.services.tasks.submit('projects.recount', { tenantId: a.id })
    // Queued, no worker yet: the queue holds it.
    expect(value(await scrape(), 'job_queue_depth', { queue: 'tenant', state: 'waiting' })).toBeGreaterThanOrEqual(1)
    workers = await startWorkers(ctx.app.services)
    const after = await waitFor(async () => {
      const s = await scrape()
      return value(s, 'jobs_finished_total', { job_type: 'projects.recount', outcome: 'completed' }) === 1 && s
    })
    expect(value(after, 'job_queue_depth', { queue: 'tenant', state: 'waiting' })).toBe(0)
    expect(job.id).toBeDefined()
  })

  it('counts Stripe webhook deliveries by event type and ledger outcome', async () => {
    const event = {
      id: 'evt_metrics_1',
      object: 'event',
      type: 'customer.created',
      created: Math.floor(Date.now() / 1000),
      api_version: Stripe.API_VERSION,
      livemode: false,
      data: { object: { id: 'cus_metrics', object: 'customer' } },
    }
    const body = JSON.stringify(event)
    const deliver = () =>
      ctx.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json', 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret: WEBHOOK_SECRET }) },
        payload: body,
      })
    expect((await deliver()).json()).toEqual({ received: true, status: 'skipped' })
    expect((await deliver()).json()).toEqual({ received: true, status: 'duplicate' })
    const samples = await scrape()
    expect(value(samples, 'stripe_webhook_events_total', { event_type: 'customer.created', outcome: 'skipped' })).toBe(1)
    expect(value(samples, 'stripe_webhook_events_total', { event_type: 'customer.created', outcome: 'duplicate' })).toBe(1)
  })
})
