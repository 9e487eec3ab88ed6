/**
 * Outbound webhooks (src/features/webhooks) against receivers started here (node:http on 127.0.0.1):
 * domain events delivered by jobs and verified with the `standardwebhooks` package; a 500 retried (the
 * backoff's delayed job promoted) until it succeeds; repeated failure disabling the endpoint and mailing
 * the owner; the SSRF guard at registration and at send time; and the routes' guards (tenant isolation,
 * admins only, plan feature, bad input).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { eq, sql } from 'drizzle-orm'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { webhookDeliveries } from '../../drizzle/tenant/schema.js'
import { compPlan } from '../../src/features/billing/comp.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { sendWebhook } from '../../src/features/webhooks/sender.js'
import { assertPublicTarget, isInternalAddress } from '../../src/features/webhooks/ssrf.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { buildApp } from '../helpers/build-app.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

interface Received {
  headers: IncomingHttpHeaders
  body: string
}

/** A webhook receiver: records every request and answers with `answer()`'s status (default 200). */
async function startReceiver(answer: (n: number) => number = () => 200) {
  const received: Received[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      res.statusCode = answer(received.length)
      res.end(res.statusCode < 300 ? 'ok' : 'receiver error')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/hook`, received, close: () => new Promise<void>((r) => server.close(() => r())) }
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>

const plan = (key: string, tierLevel: number, features: string[]): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features,
  limits: { members: null, projects: null, apiKeys: null },
  tierLevel,
  sortOrder: tierLevel,
})

let smtp: SmtpCapture
beforeAll(async () => {
  smtp = await startSmtpCapture()
})
afterAll(async () => {
  await smtp?.close()
})
const ctx = useApp(
  () => ({ SMTP_HOST: smtp.host, SMTP_PORT: String(smtp.port), SMTP_STARTTLS: 'false', WEBHOOKS_ALLOW_PRIVATE: 'true', WEBHOOKS_DISABLE_AFTER: '2' }),
  { closeTimeoutMs: 120_000 },
)
let worker: WorkerRuntime
let a: TenantFixture
let b: TenantFixture
let free: TenantFixture
const receivers: Receiver[] = []

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [plan('free', 0, ['projects', 'members']), plan('pro', 1, ['projects', 'members', 'webhooks'])])
  worker = await startWorkers(ctx.app.services, { scopes: ['system', 'tenant'], concurrency: 4, schedules: false })
  ;[a, b, free] = await Promise.all([tenantWith(ctx.app), tenantWith(ctx.app), tenantWith(ctx.app)])
  for (const t of [a, b]) {
    await compPlan(ctx.app.host.db, { tenantId: t.id, planKey: 'pro', expiresAt: null, actorUserId: t.owner.id })
    await ctx.app.entitlements.invalidate(t.id)
  }
}, 60_000)
afterAll(async () => {
  await worker?.close(5000)
  await Promise.all(receivers.map((r) => r.close()))
})

const receiver = async (answer?: (n: number) => number) => {
  const r = await startReceiver(answer)
  receivers.push(r)
  return r
}
const register = async (t: TenantFixture, url: string, events: string[]) => {
  const res = await t.as(t.admin).post('/webhooks', { url, events, description: 'test receiver' })
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as { id: string; secret: string }
}
const deliveries = async (t: TenantFixture, endpointId: string) => (await t.as(t.admin).get(`/webhooks/${endpointId}/deliveries`)).json().items as {
  id: string
  status: string
  attempts: number
  responseStatus: number | null
  eventType: string
}[]
/** Run a delivery's next attempt now instead of after the backoff (the job waits in BullMQ's delayed set). */
const promote = async (deliveryId: string) => {
  const queue = ctx.app.services.tasks.queues.byScope('tenant')
  const job = await waitFor(async () => {
    const j = await queue.getJob(deliveryId)
    return j && (await j.getState()) === 'delayed' ? j : undefined
  }, { message: `delivery ${deliveryId} waiting for its retry` })
  await job.promote()
}

describe('delivery', () => {
  it('delivers domain events signed in the Standard Webhooks format', async () => {
    const r = await receiver()
    const endpoint = await register(a, r.url, ['project.created', 'member.left'])
    expect(endpoint.secret).toMatch(/^whsec_/)
    const listed = (await a.as(a.admin).get('/webhooks')).json()
    expect(listed.items.map((e: { id: string }) => e.id)).toContain(endpoint.id)
    expect(JSON.stringify(listed)).not.toContain(endpoint.secret) // shown once, at creation

    const project = (await a.as(a.editor).post('/projects', { name: 'hooked' })).json()
    expect((await a.as(a.viewer).delete(`/members/${a.viewer.id}`)).statusCode).toBe(204)
    const got = await waitFor(() => (r.received.length >= 2 ? r.received : undefined), { message: 'two deliveries' })
    const wh = new Webhook(endpoint.secret)
    const events = got.map((m) => wh.verify(m.body, m.headers as Record<string, string>) as { type: string; data: Record<string, unknown> })
    const created = events.find((e) => e.type === 'project.created')!
    expect(created.data.project).toMatchObject({ id: project.id, name: 'hooked' })
    expect(events.find((e) => e.type === 'member.left')!.data).toMatchObject({ member: { userId: a.viewer.id }, removedBy: null })
    // Tampering with the body breaks the signature.
    expect(() => wh.verify(got[0]!.body.replace('}', ',"x":1}'), got[0]!.headers as Record<string, string>)).toThrow()
    const log = await waitFor(async () => {
      const items = await deliveries(a, endpoint.id)
      return items.length === 2 && items.every((d) => d.status === 'succeeded') ? items : undefined
    }, { message: 'the delivery log' })
    expect(log.map((d) => d.responseStatus)).toEqual([200, 200])
  })

  it('costs a tenant without a subscribed endpoint no outbox row and no job, and sees a new endpoint at once', async () => {
    const fanOuts = async (tenantId: string) =>
      (await ctx.app.host.sql<{ n: number }[]>`
        select count(*)::int as n from core_outbox where job_name = 'webhooks.fan_out' and payload->>'tenantId' = ${tenantId}`)[0]!.n
    const before = await fanOuts(b.id)
    expect((await b.as(b.editor).post('/projects', { name: 'unwatched' })).statusCode).toBe(201)
    expect(await fanOuts(b.id)).toBe(before)
    const r = await receiver()
    await register(b, r.url, ['project.created'])
    expect((await b.as(b.editor).post('/projects', { name: 'watched' })).statusCode).toBe(201)
    expect(await fanOuts(b.id)).toBe(before + 1)
    const [got] = await waitFor(() => (r.received.length > 0 ? r.received : undefined), { message: 'the watched project delivered' })
    expect(JSON.parse(got!.body)).toMatchObject({ type: 'project.created', data: { project: { name: 'watched' } } })
  })

  it('trims the delivery log past WEBHOOK_RETENTION_DAYS when the next event fans out', async () => {
    const r = await receiver()
    const endpoint = await register(a, r.url, ['project.created'])
    await a.as(a.admin).post(`/webhooks/${endpoint.id}/test`)
    const [old] = await waitFor(async () => {
      const items = await deliveries(a, endpoint.id)
      return items[0]?.status === 'succeeded' ? items : undefined
    }, { message: 'the test delivery' })
    const record = (await ctx.app.services.catalog.get(a.id))!
    await ctx.app.services.pools.withTenant(record, (db) =>
      db.update(webhookDeliveries).set({ createdAt: sql`now() - interval '40 days'` }).where(eq(webhookDeliveries.id, old!.id)),
    )
    expect((await a.as(a.editor).post('/projects', { name: 'trims the log' })).statusCode).toBe(201)
    const items = await waitFor(async () => {
      const now = await deliveries(a, endpoint.id)
      return now.length === 1 && now[0]!.eventType === 'project.created' ? now : undefined
    }, { message: 'the old delivery trimmed, the new one logged' })
    expect(items.map((d) => d.id)).not.toContain(old!.id)
  })

  it('delivers member.joined when an invitation is accepted', async () => {
    const r = await receiver()
    const endpoint = await register(b, r.url, ['member.joined'])
    const newcomer = await b.add('newcomer', 'member', 'editor')
    const [got] = await waitFor(() => (r.received.length > 0 ? r.received : undefined), { message: 'member.joined delivered' })
    const event = new Webhook(endpoint.secret).verify(got!.body, got!.headers as Record<string, string>) as { type: string; data: unknown }
    expect(event).toMatchObject({ type: 'member.joined', data: { member: { userId: newcomer.id, email: newcomer.email, role: 'member', localRole: 'editor' } } })
  })

  it('delivers subscription.changed when billing applies a Stripe event that changed the subscription', async () => {
    const r = await receiver()
    const endpoint = await register(b, r.url, ['subscription.changed'])
    const subscription = { id: '0190a0a0-0000-7000-8000-000000000001', tenantId: b.id, stripeSubscriptionId: 'sub_x', status: 'active' }
    const billingEvent = (changed: boolean) => ({
      eventId: `evt_${changed}`,
      type: 'customer.subscription.updated',
      occurredAt: new Date(),
      tenantId: b.id,
      subscription: { ...subscription, previousStatus: 'trialing', planKey: 'pro', created: false, changed },
    })
    await ctx.app.onBillingEvent(billingEvent(false)) // only the watermark moved: nothing to tell
    await ctx.app.onBillingEvent(billingEvent(true))
    const [got] = await waitFor(() => (r.received.length > 0 ? r.received : undefined), { message: 'subscription.changed delivered' })
    const event = new Webhook(endpoint.secret).verify(got!.body, got!.headers as Record<string, string>) as { type: string; data: unknown }
    expect(event).toMatchObject({ type: 'subscription.changed', data: { subscription: { status: 'active', previousStatus: 'trialing', planKey: 'pro' } } })
    await waitFor(async () => ((await deliveries(b, endpoint.id))[0]?.status === 'succeeded' ? true : undefined), { message: 'logged' })
    expect(r.received).toHaveLength(1)
  })

  it('retries a failed delivery with backoff until the endpoint answers 2xx, and redelivers by hand with the same webhook-id', async () => {
    const r = await receiver((n) => (n === 1 ? 500 : 200))
    const endpoint = await register(a, r.url, ['project.updated'])
    const test = await a.as(a.admin).post(`/webhooks/${endpoint.id}/test`)
    expect(test.statusCode).toBe(202)
    const deliveryId = test.json().id
    await waitFor(async () => ((await deliveries(a, endpoint.id))[0]?.attempts === 1 ? true : undefined), { message: 'the first attempt' })
    expect((await deliveries(a, endpoint.id))[0]).toMatchObject({ status: 'pending', responseStatus: 500 })
    await promote(deliveryId)
    const done = await waitFor(async () => {
      const [d] = await deliveries(a, endpoint.id)
      return d?.status === 'succeeded' ? d : undefined
    }, { message: 'the retried delivery' })
    expect(done).toMatchObject({ attempts: 2, responseStatus: 200, eventType: 'webhook.test' })
    expect(r.received.map((m) => m.headers['webhook-id'])).toEqual([deliveryId, deliveryId])

    const again = await a.as(a.admin).post(`/webhooks/${endpoint.id}/deliveries/${deliveryId}/redeliver`)
    expect(again.statusCode).toBe(202)
    await waitFor(() => (r.received.length === 3 ? true : undefined), { message: 'the redelivery' })
    expect(r.received[2]!.headers['webhook-id']).toBe(deliveryId)
    new Webhook(endpoint.secret).verify(r.received[2]!.body, r.received[2]!.headers as Record<string, string>)
  })

  it('disables an endpoint after WEBHOOKS_DISABLE_AFTER consecutive failures and mails the owners', async () => {
    const r = await receiver(() => 500)
    const endpoint = await register(a, r.url, ['project.updated'])
    const deliveryId = (await a.as(a.admin).post(`/webhooks/${endpoint.id}/test`)).json().id
    await promote(deliveryId)
    const disabled = await waitFor(async () => {
      const e = (await a.as(a.admin).get(`/webhooks/${endpoint.id}`)).json()
      return e.enabled === false ? e : undefined
    }, { message: 'the endpoint disabled' })
    expect(disabled).toMatchObject({ consecutiveFailures: 2, disabledReason: expect.stringContaining('HTTP 500') })
    expect((await deliveries(a, endpoint.id))[0]).toMatchObject({ status: 'failed', attempts: 2 })
    // The owner's mail (the fixtures' welcome mails arrive in the same capture).
    const mail = await waitFor(
      () => smtp.messages.find((m) => m.envelope.to.includes(a.owner.email) && m.subject?.includes('webhook endpoint')),
      { message: 'the owner mailed' },
    )
    expect(mail.subject).toContain('was disabled')
    expect(mail.text).toContain(r.url)
    // Disabled: no redelivery until it is enabled again, which resets the count.
    const refused = await a.as(a.admin).post(`/webhooks/${endpoint.id}/deliveries/${deliveryId}/redeliver`)
    expect(refused.statusCode).toBe(409)
    expect(refused.json().code).toBe('WEBHOOK_ENDPOINT_DISABLED')
    const enabled = (await a.as(a.admin).patch(`/webhooks/${endpoint.id}`, { enabled: true })).json()
    expect(enabled).toMatchObject({ enabled: true, consecutiveFailures: 0, disabledReason: null })
  })
})

describe('SSRF guard', () => {
  it('classifies internal v4 and v6 addresses', () => {
    for (const internal of ['10.1.2.3', '127.0.0.1', '169.254.169.254', '172.16.0.1', '192.168.1.1', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd12::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1'])
      expect(isInternalAddress(internal), internal).toBe(true)
    for (const external of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8']) expect(isInternalAddress(external), external).toBe(false)
  })

  it('refuses URLs resolving to internal addresses, and the send itself re-checks the address it connects to', async () => {
    for (const url of ['http://10.0.0.1/', 'http://127.0.0.1:9/', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/', 'http://localhost/'])
      await expect(assertPublicTarget(new URL(url), false), url).rejects.toThrow(/internal address/)
    await expect(assertPublicTarget(new URL('http://93.184.216.34/'), false)).resolves.toBeUndefined()

    const r = await receiver()
    const viaName = r.url.replace('127.0.0.1', 'localhost')
    const refused = await sendWebhook(viaName, '{}', {}, { timeoutMs: 2000, allowPrivate: false })
    expect(refused).toMatchObject({ ok: false, forbidden: true, error: expect.stringContaining('internal address') })
    expect((await sendWebhook(r.url, '{}', {}, { timeoutMs: 2000, allowPrivate: false })).forbidden).toBe(true)
    expect(r.received).toHaveLength(0)
    expect((await sendWebhook(r.url, '{}', {}, { timeoutMs: 2000, allowPrivate: true })).ok).toBe(true)
  })

  it('answers 400 WEBHOOK_URL_FORBIDDEN at registration when private targets are not allowed', async () => {
    const app = await buildApp(ctx.env.configWith({ WEBHOOKS_ALLOW_PRIVATE: 'false' }))
    try {
      const t = await tenantWith(app)
      await compPlan(app.host.db, { tenantId: t.id, planKey: 'pro', expiresAt: null, actorUserId: t.owner.id })
      await app.entitlements.invalidate(t.id)
      for (const url of ['http://127.0.0.1:8080/hook', 'http://10.0.0.7/hook', 'http://169.254.169.254/', 'http://[::1]/hook']) {
        const res = await t.as(t.admin).post('/webhooks', { url, events: ['project.created'] })
        expect(res.statusCode, url).toBe(400)
        expect(res.json().code).toBe('WEBHOOK_URL_FORBIDDEN')
      }
    } finally {
      await app.close()
    }
  })
})

describe('/api/webhooks guards', () => {
  it('keeps tenants apart: another tenant’s endpoints and deliveries are 404', async () => {
    const r = await receiver()
    const endpoint = await register(a, r.url, ['project.deleted'])
    const deliveryId = (await a.as(a.admin).post(`/webhooks/${endpoint.id}/test`)).json().id
    for (const res of [
      await b.as(b.admin).get(`/webhooks/${endpoint.id}`),
      await b.as(b.admin).get(`/webhooks/${endpoint.id}/deliveries`),
      await b.as(b.admin).post(`/webhooks/${endpoint.id}/deliveries/${deliveryId}/redeliver`),
      await b.as(b.admin).patch(`/webhooks/${endpoint.id}`, { enabled: false }),
      await b.as(b.admin).delete(`/webhooks/${endpoint.id}`),
    ]) {
      expect(res.statusCode).toBe(404)
      expect(res.json().code).toBe('WEBHOOK_ENDPOINT_NOT_FOUND')
    }
    expect((await b.as(b.admin).get('/webhooks')).json().items.map((e: { id: string }) => e.id)).not.toContain(endpoint.id)
    // A's own member from B's side: the tenant guard refuses before the route.
    expect((await b.admin.c.get('/api/webhooks', { 'x-tenant-id': a.slug })).statusCode).toBe(404)
    expect((await a.as(a.admin).delete(`/webhooks/${endpoint.id}`)).statusCode).toBe(204)
  })

  it('needs an admin (403), the plan’s webhooks feature (403) and valid input (400)', async () => {
    const editor = await a.as(a.editor).get('/webhooks')
    expect(editor.statusCode).toBe(403)
    expect(editor.json().code).toBe('INSUFFICIENT_ROLE')
    const gated = await free.as(free.admin).post('/webhooks', { url: 'http://127.0.0.1:1/', events: ['project.created'] })
    expect(gated.statusCode).toBe(403)
    expect(gated.json()).toMatchObject({ code: 'FEATURE_NOT_IN_PLAN' })
    for (const body of [
      { url: 'not a url at all', events: ['project.created'] },
      { url: 'ftp://127.0.0.1/x', events: ['project.created'] },
      { url: 'http://user:pw@127.0.0.1/x', events: ['project.created'] },
      { url: 'http://127.0.0.1/x', events: [] },
      { url: 'http://127.0.0.1/x', events: ['project.exploded'] },
      { url: 'http://127.0.0.1/x' },
    ]) {
      const res = await a.as(a.admin).post('/webhooks', body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
    }
    const missing = await a.as(a.admin).get('/webhooks/00000000-0000-4000-8000-000000000000')
    expect(missing.json().code).toBe('WEBHOOK_ENDPOINT_NOT_FOUND')
  })
})
