/**
 * Inbound webhooks (src/features/inbound-webhooks): HMAC-SHA256 verification (GitHub's official test
 * vector, base64 and timestamped schemes), and POST /webhooks/github against the real host database and
 * queue: a delivery is recorded once and processed by its job; a bad signature writes nothing; a
 * redelivery of the same X-GitHub-Delivery answers 200 and is not processed again.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signHmac, verifyHmacSignature } from '../../src/features/inbound-webhooks/signature.js'
import { inboundTrimLedger } from '../../src/features/inbound-webhooks/trim-job.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { buildApp } from '../helpers/build-app.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

// GitHub's documented test vector (docs.github.com, "Validating webhook deliveries").
const GITHUB_SECRET = "It's a Secret to Everybody"
const GITHUB_PAYLOAD = 'Hello, World!'
const GITHUB_SIGNATURE = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'
const github = { encoding: 'hex', prefix: 'sha256=' } as const

describe('verifyHmacSignature', () => {
  it('accepts GitHub’s official test vector and refuses it altered', () => {
    const body = Buffer.from(GITHUB_PAYLOAD)
    expect(verifyHmacSignature(github, { secret: GITHUB_SECRET, body, header: GITHUB_SIGNATURE })).toEqual({ ok: true })
    expect(signHmac(github, GITHUB_SECRET, GITHUB_PAYLOAD)).toBe(GITHUB_SIGNATURE)
    expect(verifyHmacSignature(github, { secret: 'another secret', body, header: GITHUB_SIGNATURE }).ok).toBe(false)
    expect(verifyHmacSignature(github, { secret: GITHUB_SECRET, body: Buffer.from('Hello, World?'), header: GITHUB_SIGNATURE }).ok).toBe(false)
    expect(verifyHmacSignature(github, { secret: GITHUB_SECRET, body, header: GITHUB_SIGNATURE.slice(7) })).toMatchObject({ ok: false })
    expect(verifyHmacSignature(github, { secret: GITHUB_SECRET, body, header: `${GITHUB_SIGNATURE.slice(0, -2)}zz` }).ok).toBe(false)
    expect(verifyHmacSignature(github, { secret: GITHUB_SECRET, body, header: undefined }).ok).toBe(false)
  })

  it('checks base64 digests and a signed timestamp within its tolerance', () => {
    const scheme = { encoding: 'base64', toleranceS: 60 } as const
    const body = Buffer.from('{"id":1}')
    const now = new Date('2026-12-01T00:00:00Z')
    const ts = String(now.getTime() / 1000)
    const header = signHmac(scheme, 'k', body, ts)
    expect(verifyHmacSignature(scheme, { secret: 'k', body, header, timestamp: ts, now })).toEqual({ ok: true })
    // The same signature replayed two minutes later, or with the timestamp changed, is refused.
    expect(verifyHmacSignature(scheme, { secret: 'k', body, header, timestamp: ts, now: new Date(now.getTime() + 120_000) })).toMatchObject({ ok: false })
    expect(verifyHmacSignature(scheme, { secret: 'k', body, header, timestamp: String(Number(ts) + 1), now }).ok).toBe(false)
    expect(verifyHmacSignature(scheme, { secret: 'k', body, header, timestamp: undefined, now }).ok).toBe(false)
  })
})

const ctx = useApp({ GITHUB_WEBHOOK_SECRET: GITHUB_SECRET })
let worker: WorkerRuntime

beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system'], concurrency: 2, schedules: false })
})
afterAll(async () => {
  await worker?.close(5000)
})

const deliver = (body: string, headers: Record<string, string>) =>
  ctx.app.inject({ method: 'POST', url: '/webhooks/github', payload: body, headers: { 'content-type': 'application/json', ...headers } })

const ledgerRows = (deliveryId: string) =>
  ctx.app.host.sql<{ status: string; event_type: string | null; payload: string; processed_at: Date | null }[]>`
    select status, event_type, payload, processed_at from core_inbound_webhook_events where webhook = 'github' and event_id = ${deliveryId}`

const githubJobs = async (deliveryId: string) => {
  const rows = await ctx.app.host.sql<{ n: number }[]>`
    select count(*)::int as n from sys_jobs where job_type = 'inbound-webhooks.github' and payload->>'ledgerId' in
      (select id::text from core_inbound_webhook_events where event_id = ${deliveryId})`
  return rows[0]!.n
}

describe('POST /webhooks/github', () => {
  it('records a signed delivery once and processes it through its job; a redelivery answers 200 and changes nothing', async () => {
    const deliveryId = randomUUID()
    const headers = { 'x-hub-signature-256': GITHUB_SIGNATURE, 'x-github-delivery': deliveryId, 'x-github-event': 'ping' }
    const first = await deliver(GITHUB_PAYLOAD, headers)
    expect(first.statusCode).toBe(200)
    expect(first.json()).toEqual({ received: true, status: 'accepted' })
    const [processed] = await waitFor(async () => {
      const rows = await ledgerRows(deliveryId)
      return rows[0]?.status === 'processed' ? rows : undefined
    }, { message: 'the github event processed' })
    expect(processed).toMatchObject({ event_type: 'ping', payload: GITHUB_PAYLOAD })

    const again = await deliver(GITHUB_PAYLOAD, headers)
    expect(again.statusCode).toBe(200)
    expect(again.json()).toEqual({ received: true, status: 'duplicate' })
    expect(await ledgerRows(deliveryId)).toHaveLength(1)
    expect((await ledgerRows(deliveryId))[0]!.processed_at).toEqual(processed!.processed_at)
    expect(await githubJobs(deliveryId)).toBe(1)
  })

  it('processes a JSON event and hands the handler its type and action', async () => {
    const deliveryId = randomUUID()
    const body = JSON.stringify({ action: 'opened', issue: { number: 1 } })
    const res = await deliver(body, { 'x-hub-signature-256': signHmac(github, GITHUB_SECRET, body), 'x-github-delivery': deliveryId, 'x-github-event': 'issues' })
    expect(res.json()).toEqual({ received: true, status: 'accepted' })
    const job = await waitFor(async () => {
      const [row] = await ctx.app.host.sql<{ status: string; result: unknown }[]>`
        select status, result from sys_jobs where job_type = 'inbound-webhooks.github' and payload->>'ledgerId' =
          (select id::text from core_inbound_webhook_events where event_id = ${deliveryId})`
      return row?.status === 'completed' ? row : undefined
    }, { message: 'the github job completed' })
    expect(job.result).toEqual({ eventType: 'issues', action: 'opened' })
  })

  it('answers 400 to a bad or missing signature and to a delivery without an id, writing nothing', async () => {
    const deliveryId = randomUUID()
    const bad = await deliver(GITHUB_PAYLOAD, { 'x-hub-signature-256': `sha256=${'0'.repeat(64)}`, 'x-github-delivery': deliveryId })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ statusCode: 400, code: 'WEBHOOK_SIGNATURE_INVALID' })
    const missing = await deliver(GITHUB_PAYLOAD, { 'x-github-delivery': deliveryId })
    expect(missing.json().code).toBe('WEBHOOK_SIGNATURE_INVALID')
    const tampered = await deliver('Hello, World?', { 'x-hub-signature-256': GITHUB_SIGNATURE, 'x-github-delivery': deliveryId })
    expect(tampered.statusCode).toBe(400)
    expect(await ledgerRows(deliveryId)).toHaveLength(0)
    const noId = await deliver(GITHUB_PAYLOAD, { 'x-hub-signature-256': GITHUB_SIGNATURE })
    expect(noId.statusCode).toBe(400)
    expect(noId.json().code).toBe('WEBHOOK_EVENT_ID_MISSING')
  })

  it('is not mounted without GITHUB_WEBHOOK_SECRET (404)', async () => {
    const app = await buildApp(ctx.env.configWith({ GITHUB_WEBHOOK_SECRET: '' }))
    try {
      const res = await app.inject({ method: 'POST', url: '/webhooks/github', payload: GITHUB_PAYLOAD, headers: { 'x-hub-signature-256': GITHUB_SIGNATURE } })
      expect(res.statusCode).toBe(404)
    } finally {
      await app.close()
    }
  })

  it('trims processed ledger rows past WEBHOOK_RETENTION_DAYS, keeping received and failed ones', async () => {
    const sql = ctx.app.host.sql
    const ids = { oldProcessed: randomUUID(), oldFailed: randomUUID(), recentProcessed: randomUUID() }
    await sql`insert into core_inbound_webhook_events (id, webhook, event_id, status, payload, received_at) values
      (${randomUUID()}, 'trim-test', ${ids.oldProcessed}, 'processed', '{}', now() - interval '40 days'),
      (${randomUUID()}, 'trim-test', ${ids.oldFailed}, 'failed', '{}', now() - interval '40 days'),
      (${randomUUID()}, 'trim-test', ${ids.recentProcessed}, 'processed', '{}', now() - interval '2 days')`
    const result = await inboundTrimLedger.process({ deps: { host: ctx.app.host, config: ctx.app.services.config } } as never, {})
    expect(result.deleted).toBeGreaterThanOrEqual(1)
    const left = await sql<{ event_id: string }[]>`select event_id from core_inbound_webhook_events where webhook = 'trim-test' order by event_id`
    expect(left.map((r) => r.event_id).sort()).toEqual([ids.oldFailed, ids.recentProcessed].sort())
  })
})
