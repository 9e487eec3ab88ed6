/**
 * Realtime streams (src/features/realtime) over real HTTP: TWO app instances built on the same Postgres
 * and Redis, each listening on a port of its own, with SSE read by node:http and WebSockets by `ws`.
 * An event published on one instance reaches the tenant's clients on both and never another tenant's;
 * Last-Event-ID resumes from the replay buffer; the guard's answers (401, 404 for another tenant);
 * a removed member and a suspended tenant are disconnected within a second; a WebSocket from a foreign
 * Origin is refused; a reader that stops reading is dropped; the per-user cap answers 429; a closing
 * server tells SSE clients to retry and closes WebSockets with 1012.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compPlan } from '../../src/features/billing/comp.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import type { RealtimeClient } from '../../src/features/realtime/hub.js'
import { ROLE_LEVEL } from '../../src/core/tenancy/rbac.js'
import { buildApp } from '../helpers/build-app.js'
import { type Member, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

/** The `ws` client (a dependency of @fastify/websocket; the kit has no @types/ws): what these tests use of it. */
interface WsClient {
  on(event: 'open', listener: () => void): WsClient
  on(event: 'message', listener: (data: Buffer) => void): WsClient
  on(event: 'close', listener: (code: number, reason: Buffer) => void): WsClient
  on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): WsClient
  on(event: 'error', listener: (err: Error) => void): WsClient
  close(): void
  terminate(): void
}
const WebSocket = createRequire(import.meta.url)('ws') as new (
  url: string,
  opts: { headers?: Record<string, string>; origin?: string },
) => WsClient

const ORIGIN = 'http://localhost:3000' // APP_BASE_URL's default: the app's own origin

const plan: PlanSeed = {
  key: 'free',
  name: 'free',
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members', 'api_access'],
  limits: { members: null, projects: null, apiKeys: null },
  tierLevel: 0,
  sortOrder: 0,
}

interface SseEvent {
  id?: string
  event?: string
  data?: string
}
interface Sse {
  status: number
  /** The JSON error body when status isn't 200. */
  error?: { code: string; statusCode: number; [k: string]: unknown }
  events: SseEvent[]
  /** Heartbeat comment lines seen. */
  comments: number
  /** `retry:` values seen. */
  retries: number[]
  ended: boolean
  endedAt: number | undefined
  close(): void
  /** Resolves with the event matching `test` (waiting for it). */
  next(test: (e: SseEvent) => boolean, message?: string): Promise<SseEvent>
}

const headersOf = (m: Pick<Member, 'c'>, slug: string, extra: Record<string, string> = {}) => ({
  cookie: Object.entries(m.c.cookies)
    .map(([k, v]) => `${k}=${v}`)
    .join('; '),
  'x-tenant-id': slug,
  ...extra,
})

function openSse(base: string, headers: Record<string, string>, path = '/api/events/stream'): Promise<Sse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const sse: Sse = {
        status: res.statusCode ?? 0,
        events: [],
        comments: 0,
        retries: [],
        ended: false,
        endedAt: undefined,
        close: () => req.destroy(),
        next: (test, message = 'an event') => waitFor(() => sse.events.find(test), { message, timeout: 10_000 }),
      }
      let buffer = ''
      res.setEncoding('utf8')
      const done = () => {
        if (!sse.ended) {
          sse.ended = true
          sse.endedAt = Date.now()
        }
      }
      res.on('end', done)
      res.on('close', done)
      res.on('error', done)
      if (sse.status !== 200) {
        res.on('data', (c: string) => {
          buffer += c
        })
        res.on('end', () => {
          sse.error = JSON.parse(buffer)
          resolve(sse)
        })
        return
      }
      res.on('data', (chunk: string) => {
        buffer += chunk
        let at = buffer.indexOf('\n\n')
        while (at >= 0) {
          const block = buffer.slice(0, at)
          buffer = buffer.slice(at + 2)
          at = buffer.indexOf('\n\n')
          const ev: SseEvent = {}
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) sse.comments++
            else if (line.startsWith('retry: ')) sse.retries.push(Number(line.slice(7)))
            else if (line.startsWith('id: ')) ev.id = line.slice(4)
            else if (line.startsWith('event: ')) ev.event = line.slice(7)
            else if (line.startsWith('data: ')) ev.data = line.slice(6)
          }
          if (ev.event || ev.data) sse.events.push(ev)
        }
      })
      resolve(sse)
    })
    req.on('error', reject)
    req.end()
  })
}

const dataOf = (e: SseEvent) => JSON.parse(e.data ?? '{}')

interface Ws {
  messages: Record<string, unknown>[]
  closed: { code: number; reason: string } | undefined
  socket: WsClient
}
function openWs(
  base: string,
  headers: Record<string, string>,
  origin: string | undefined = ORIGIN,
  query = '',
): Promise<Ws | { status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${base.replace('http', 'ws')}/api/events/ws${query}`, { headers, ...(origin ? { origin } : {}) })
    const ws: Ws = { messages: [], closed: undefined, socket }
    socket.on('message', (data) => ws.messages.push(JSON.parse(data.toString('utf8'))))
    socket.on('close', (code, reason) => {
      ws.closed = { code, reason: reason.toString('utf8') }
    })
    socket.on('open', () => resolve(ws))
    socket.on('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    socket.on('error', reject)
  })
}
const isOpen = (ws: Ws | { status: number }): ws is Ws => 'socket' in ws

const ctx = useApp({ REALTIME_MAX_PER_USER: '3', REALTIME_HEARTBEAT_S: '1', REALTIME_MAX_BUFFER_KB: '64' }, { closeTimeoutMs: 60_000 })
let app2: FastifyInstance
let app2Closed = false
let base1: string
let base2: string
let a: TenantFixture
let b: TenantFixture
const open: { close(): void }[] = []
const track = <T extends { close(): void }>(x: T): T => {
  open.push(x)
  return x
}

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [
    plan,
    { ...plan, key: 'tiny', name: 'tiny', tierLevel: 1, sortOrder: 1, limits: { realtimeConnections: 2 } },
  ])
  app2 = await buildApp(ctx.env.config)
  const listen = async (app: FastifyInstance) => {
    await app.listen({ port: 0, host: '127.0.0.1' })
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  }
  base1 = await listen(ctx.app)
  base2 = await listen(app2)
  ;[a, b] = await Promise.all([tenantWith(ctx.app, { verified: true }), tenantWith(ctx.app)])
}, 60_000)
afterAll(async () => {
  for (const c of open) c.close()
  if (!app2Closed) await app2?.close()
})

describe('fan-out across instances', () => {
  it('delivers an event published on one instance to the tenant’s clients on both, never to another tenant’s', async () => {
    const a1 = track(await openSse(base1, headersOf(a.viewer, a.slug)))
    const a2 = track(await openSse(base2, headersOf(a.editor, a.slug)))
    const b1 = track(await openSse(base1, headersOf(b.viewer, b.slug)))
    const ws2 = await openWs(base2, headersOf(a.owner, a.slug))
    if (!isOpen(ws2)) throw new Error(`ws refused: ${JSON.stringify(ws2)}`)
    track({ close: () => ws2.socket.close() })
    expect([a1.status, a2.status, b1.status]).toEqual([200, 200, 200])

    // Published by a write on instance 1.
    const created = await a.as(a.editor).post('/projects', { name: 'live one' })
    expect(created.statusCode, created.body).toBe(201)
    const id = created.json().id
    const isMine = (e: SseEvent) => e.event === 'project.created' && dataOf(e).data.project.id === id
    const [on1, on2] = await Promise.all([a1.next(isMine, 'the event on instance 1'), a2.next(isMine, 'the event on instance 2')])
    expect(on1.id).toMatch(/^\d+-\d+$/)
    expect(on2.id).toBe(on1.id)
    expect(dataOf(on1)).toMatchObject({ seq: on1.id, type: 'project.created', data: { project: { id, name: 'live one' } } })
    expect(dataOf(on1).id).toMatch(/^[0-9a-f-]{36}$/)
    await waitFor(() => ws2.messages.find((m) => m.seq === on1.id), { message: 'the event on the WebSocket' })

    // Published on instance 2 (its services, as a job there would).
    await app2.services.events.publish(a.id, 'project.deleted', { project: { id } })
    await Promise.all([a1.next((e) => e.event === 'project.deleted'), a2.next((e) => e.event === 'project.deleted')])

    // Tenant B's client heard none of A's events, though its own arrive.
    const bProject = await b.as(b.editor).post('/projects', { name: 'b side' })
    await b1.next((e) => e.event === 'project.created' && dataOf(e).data.project.id === bProject.json().id)
    expect(b1.events.filter((e) => e.id === on1.id || dataOf(e).data?.project?.id === id)).toEqual([])
    expect(a1.events.some((e) => dataOf(e).data?.project?.id === bProject.json().id)).toBe(false)
    for (const c of [a1, a2, b1]) c.close()
    ws2.socket.close()
  })

  it('sends subscription changes to admins only', async () => {
    const viewer = track(await openSse(base1, headersOf(a.viewer, a.slug)))
    const admin = track(await openSse(base2, headersOf(a.admin, a.slug)))
    const subscription = { id: 'sub_1', status: 'active', previousStatus: null, planKey: 'pro', created: true }
    await ctx.app.services.events.publish(a.id, 'subscription.changed', { subscription })
    await ctx.app.services.events.publish(a.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-000000000000' } })
    await admin.next((e) => e.event === 'subscription.changed')
    await viewer.next((e) => e.event === 'project.deleted')
    expect(viewer.events.some((e) => e.event === 'subscription.changed')).toBe(false)
    viewer.close()
    admin.close()
  })

  it('authenticates an API key like every /api route', async () => {
    const key = await a.as(a.owner).post('/api-keys', { name: 'stream', role: 'viewer' })
    expect(key.statusCode, key.body).toBe(201)
    const sse = track(await openSse(base2, { authorization: `Bearer ${key.json().secret}` }))
    expect(sse.status).toBe(200)
    await ctx.app.services.events.publish(a.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-000000000001' } })
    await sse.next((e) => e.event === 'project.deleted' && dataOf(e).data.project.id.endsWith('1'))
    sse.close()
    const bad = await openSse(base2, { authorization: 'Bearer tk_live_nope' })
    expect(bad.status).toBe(401)
  })
})

describe('resume', () => {
  it('replays what was missed after Last-Event-ID, in order, then goes on live', async () => {
    const first = track(await openSse(base1, headersOf(a.viewer, a.slug)))
    await ctx.app.services.events.publish(a.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-00000000000a' } })
    const seen = await first.next((e) => e.event === 'project.deleted' && dataOf(e).data.project.id.endsWith('a'))
    first.close()
    const missed = ['b', 'c', 'd'].map((x) => `00000000-0000-4000-8000-00000000000${x}`)
    for (const id of missed) await ctx.app.services.events.publish(a.id, 'project.deleted', { project: { id } })

    // On the other instance, as a client reconnecting through a load balancer would.
    const again = track(await openSse(base2, headersOf(a.viewer, a.slug, { 'last-event-id': seen.id! })))
    await waitFor(() => again.events.length >= 3, { message: 'the replay' })
    expect(again.events.slice(0, 3).map((e) => dataOf(e).data.project.id)).toEqual(missed)
    const seqs = again.events.map((e) => e.id!)
    expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!)).toBe(true)
    expect(again.events.some((e) => e.id === seen.id)).toBe(false)
    await ctx.app.services.events.publish(a.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-00000000000e' } })
    await again.next((e) => dataOf(e).data.project.id.endsWith('e'), 'the live event after the replay')
    expect(again.events.filter((e) => dataOf(e).data.project.id.endsWith('e'))).toHaveLength(1)
    again.close()

    // A WebSocket resumes the same way, with ?lastEventId=.
    const ws = await openWs(base2, headersOf(a.viewer, a.slug), ORIGIN, `?lastEventId=${seen.id}`)
    if (!isOpen(ws)) throw new Error(`ws refused: ${JSON.stringify(ws)}`)
    await waitFor(() => ws.messages.length >= 4, { message: 'the replay on the WebSocket' })
    const replayed = ws.messages.slice(0, 4).map((m) => (m as { data: { project: { id: string } } }).data.project.id)
    expect(replayed).toEqual([...missed, '00000000-0000-4000-8000-00000000000e'])
    ws.socket.close()

    // ?lastEventId= does the same on the stream (EventSource can't set headers on its first connection).
    const byQuery = track(await openSse(base1, headersOf(a.viewer, a.slug), `/api/events/stream?lastEventId=${seen.id}`))
    await waitFor(() => byQuery.events.length >= 4, { message: 'the replay by query' })
    byQuery.close()
    const malformed = await openSse(base1, headersOf(a.viewer, a.slug, { 'last-event-id': 'yesterday' }))
    expect(malformed.status).toBe(400)
  })

  it('says `reset` when the events to resume from are gone from the buffer', async () => {
    const first = track(await openSse(base1, headersOf(b.viewer, b.slug)))
    await ctx.app.services.events.publish(b.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-0000000000f1' } })
    const seen = await first.next((e) => e.event === 'project.deleted')
    first.close()
    await ctx.app.services.events.publish(b.id, 'project.deleted', { project: { id: '00000000-0000-4000-8000-0000000000f2' } })
    await ctx.app.redis.xtrim(ctx.app.realtime.keys.log(b.id), 'MAXLEN', 0)
    const again = track(await openSse(base2, headersOf(b.viewer, b.slug, { 'last-event-id': seen.id! })))
    const reset = await again.next((e) => e.event === 'reset')
    expect(dataOf(reset)).toEqual({ reason: 'replay_gap' })
    again.close()
  })

  it('starts a fresh client at the tenant’s newest event: one published while it subscribes still reaches it', async () => {
    // The route reads the start before the client sees its stream open; the subscription comes after.
    // An event published in between (a client reacting to the open stream) once got lost.
    const c = await tenantWith(ctx.app)
    const project = (x: string) => ({ project: { id: `00000000-0000-4000-8000-0000000000${x}` } })
    await ctx.app.services.events.publish(c.id, 'project.deleted', project('c0'))
    const start = await ctx.app.realtime.startAt(c.id)
    expect(start.resumed).toBe(false)
    await ctx.app.services.events.publish(c.id, 'project.deleted', project('c1'))
    const frames: string[] = []
    const resets: string[] = []
    const client: RealtimeClient = {
      id: randomUUID(),
      kind: 'sse',
      tenantId: c.id,
      userId: c.viewer.id,
      level: ROLE_LEVEL.viewer,
      membershipRole: 'viewer',
      credentials: {},
      write: (frame) => void frames.push(frame.json),
      buffered: () => 0,
      heartbeat: () => true,
      reset: (reason) => void resets.push(reason),
      close() {},
    }
    await ctx.app.realtime.attach(client, start)
    await ctx.app.services.events.publish(c.id, 'project.deleted', project('c2'))
    await waitFor(() => frames.length >= 2, { message: 'the event published while subscribing, then the live one' })
    ctx.app.realtime.detach(client)
    expect(frames.map((f) => JSON.parse(f).data.project.id.slice(-2))).toEqual(['c1', 'c2'])
    expect(resets).toEqual([])
  })
})

describe('heartbeats', () => {
  it('sends an idle SSE stream a comment line every REALTIME_HEARTBEAT_S (1 s here)', async () => {
    const c = await tenantWith(ctx.app)
    const idle = track(await openSse(base2, headersOf(c.viewer, c.slug)))
    await waitFor(() => idle.comments >= 2, { message: 'two heartbeats', timeout: 5000 })
    expect(idle.events).toEqual([])
    idle.close()
  })
})

describe('the guard', () => {
  it('answers 401 without credentials and 404 for a tenant the caller is not in, on both routes', async () => {
    const anon = await openSse(base1, { 'x-tenant-id': a.slug })
    expect(anon.status).toBe(401)
    expect(anon.error).toMatchObject({ code: 'UNAUTHENTICATED' })
    const other = await openSse(base2, headersOf(b.viewer, a.slug))
    expect(other.status).toBe(404)
    expect(other.error).toMatchObject({ code: 'TENANT_NOT_FOUND' })
    const wsAnon = await openWs(base1, { 'x-tenant-id': a.slug })
    expect(wsAnon).toMatchObject({ status: 401 })
    const wsOther = await openWs(base1, headersOf(b.viewer, a.slug))
    expect(wsOther).toMatchObject({ status: 404 })
  })

  it('refuses a WebSocket handshake from a foreign Origin (403 ORIGIN_NOT_ALLOWED) and a plain GET (426)', async () => {
    const refused = await openWs(base2, headersOf(a.viewer, a.slug), 'https://evil.example')
    expect(refused).toMatchObject({ status: 403 })
    expect(JSON.parse((refused as { body: string }).body)).toMatchObject({ code: 'ORIGIN_NOT_ALLOWED' })
    const plain = await a.as(a.viewer).get('/events/ws')
    expect(plain.statusCode).toBe(426)
    expect(plain.json().code).toBe('UPGRADE_REQUIRED')
  })

  it('caps connections per user (429 REALTIME_CONNECTION_LIMIT), across instances', async () => {
    const m = await a.add('busy', 'member', 'viewer')
    const held = [
      track(await openSse(base1, headersOf(m, a.slug))),
      track(await openSse(base2, headersOf(m, a.slug))),
      track(await openSse(base1, headersOf(m, a.slug))),
    ]
    expect(held.map((s) => s.status)).toEqual([200, 200, 200])
    const over = await openSse(base2, headersOf(m, a.slug))
    expect(over.status).toBe(429)
    expect(over.error).toMatchObject({ code: 'REALTIME_CONNECTION_LIMIT', scope: 'user', limit: 3 })
    const overWs = await openWs(base1, headersOf(m, a.slug))
    expect(overWs).toMatchObject({ status: 429 })
    held[0]!.close()
    const after = await waitFor(
      async () => {
        const s = await openSse(base2, headersOf(m, a.slug))
        return s.status === 200 ? s : undefined
      },
      { message: 'a slot given back' },
    )
    track(after)
    for (const s of [...held, after]) s.close()
  })
  it('caps connections per tenant by its plan’s realtimeConnections (429, scope tenant), across instances', async () => {
    const t = await tenantWith(ctx.app)
    await compPlan(ctx.app.host.db, { tenantId: t.id, planKey: 'tiny', expiresAt: null, actorUserId: t.owner.id })
    await ctx.app.entitlements.invalidate(t.id)
    const held = [track(await openSse(base1, headersOf(t.viewer, t.slug))), track(await openSse(base2, headersOf(t.editor, t.slug)))]
    expect(held.map((s) => s.status)).toEqual([200, 200])
    const over = await openSse(base2, headersOf(t.owner, t.slug))
    expect(over.status).toBe(429)
    expect(over.error).toMatchObject({ code: 'REALTIME_CONNECTION_LIMIT', scope: 'tenant', limit: 2 })
    // Another tenant is not affected.
    const elsewhere = track(await openSse(base2, headersOf(b.owner, b.slug)))
    expect(elsewhere.status).toBe(200)
    for (const s of [...held, elsewhere]) s.close()
  })
})

describe('access ending', () => {
  it('disconnects a removed member within a second, on every instance', async () => {
    const m = await a.add('leaving', 'member', 'viewer')
    const on1 = track(await openSse(base1, headersOf(m, a.slug)))
    const on2 = track(await openSse(base2, headersOf(m, a.slug)))
    const ws = await openWs(base2, headersOf(m, a.slug))
    if (!isOpen(ws)) throw new Error('ws refused')
    const stay = track(await openSse(base2, headersOf(a.viewer, a.slug)))
    const t0 = Date.now()
    expect((await a.as(a.admin).delete(`/members/${m.id}`)).statusCode).toBe(204)
    await waitFor(() => on1.ended && on2.ended && ws.closed, { message: 'the removed member’s streams closed', timeout: 3000 })
    expect(Math.max(on1.endedAt!, on2.endedAt!) - t0).toBeLessThan(1000)
    expect(on2.events.find((e) => e.event === 'close')).toMatchObject({ data: '{"reason":"membership_ended"}' })
    expect(ws.closed).toEqual({ code: 4403, reason: 'membership_ended' })
    // The member.left event still reaches those who stay; the stream refuses the removed member now.
    await stay.next((e) => e.event === 'member.left' && dataOf(e).data.member.userId === m.id)
    expect(stay.ended).toBe(false)
    expect((await openSse(base1, headersOf(m, a.slug))).status).toBe(404)
    stay.close()
  })

  it('ends a session’s streams at logout and an API key’s when it is revoked, within a second', async () => {
    const m = await a.add('logsout', 'member', 'viewer')
    const viaSession = track(await openSse(base2, headersOf(m, a.slug)))
    const key = await a.as(a.owner).post('/api-keys', { name: 'revoked soon', role: 'viewer' })
    expect(key.statusCode, key.body).toBe(201)
    const viaKey = track(await openSse(base1, { authorization: `Bearer ${key.json().secret}` }))
    const otherKey = await a.as(a.owner).post('/api-keys', { name: 'stays', role: 'viewer' })
    const stays = track(await openSse(base2, { authorization: `Bearer ${otherKey.json().secret}` }))
    expect([viaSession.status, viaKey.status, stays.status]).toEqual([200, 200, 200])

    let t0 = Date.now()
    expect((await m.c.post('/auth/logout')).statusCode).toBeLessThan(300)
    await waitFor(() => viaSession.ended, { message: 'the session’s stream closed', timeout: 3000 })
    expect(viaSession.endedAt! - t0).toBeLessThan(1000)
    expect(viaSession.events.find((e) => e.event === 'close')).toMatchObject({ data: '{"reason":"credentials_ended"}' })

    t0 = Date.now()
    expect((await a.as(a.owner).delete(`/api-keys/${key.json().id}`)).statusCode).toBeLessThan(300)
    await waitFor(() => viaKey.ended, { message: 'the revoked key’s stream closed', timeout: 3000 })
    expect(viaKey.endedAt! - t0).toBeLessThan(1000)
    expect(stays.ended).toBe(false)
    stays.close()
  })

  it('disconnects a suspended tenant’s clients within a second', async () => {
    const c = await tenantWith(ctx.app)
    const on1 = track(await openSse(base1, headersOf(c.viewer, c.slug)))
    const on2 = track(await openSse(base2, headersOf(c.owner, c.slug)))
    expect(await app2.tenancy.provisioner.run('suspended', c.id)).toBe('done')
    // Within a second of the suspension (committed when run() returns; its own duration is the machine's).
    const done = Date.now()
    await waitFor(() => on1.ended && on2.ended, { message: 'the suspended tenant’s streams closed', timeout: 3000 })
    expect(Math.max(on1.endedAt!, on2.endedAt!) - done).toBeLessThan(1000)
    expect(on1.events.find((e) => e.event === 'close')).toMatchObject({ data: '{"reason":"tenant_unavailable"}' })
    const again = await openSse(base1, headersOf(c.viewer, c.slug))
    expect(again.status).toBe(403)
    expect(again.error).toMatchObject({ code: 'TENANT_SUSPENDED' })
  })
})

describe('backpressure', () => {
  it('drops a client that stops reading instead of buffering for it', async () => {
    const c = await tenantWith(ctx.app)
    const before = ctx.app.realtime.stats().sse
    // A raw socket that sends the request and never reads a byte.
    const socket = connect(Number(new URL(base1).port), '127.0.0.1')
    track({ close: () => socket.destroy() })
    const h = headersOf(c.viewer, c.slug)
    socket.write(
      `GET /api/events/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncookie: ${h.cookie}\r\nx-tenant-id: ${c.slug}\r\naccept: text/event-stream\r\n\r\n`,
    )
    socket.pause()
    await waitFor(() => ctx.app.realtime.stats().sse > before, { message: 'the slow client connected' })
    const big = { id: '00000000-0000-4000-8000-000000000000', name: 'x', description: 'y'.repeat(32 * 1024) }
    let sent = 0
    await waitFor(
      async () => {
        for (let i = 0; i < 20; i++) await ctx.app.services.events.publish(c.id, 'project.updated', { project: big as never })
        sent += 20
        return ctx.app.realtime.stats().sse === before
      },
      { message: 'the slow client dropped', timeout: 20_000, interval: 10 },
    )
    const metrics = await ctx.app.metrics.registry.getSingleMetricAsString('realtime_clients_closed_total')
    expect(metrics).toMatch(/reason="slow_consumer",kind="sse"} [1-9]/)
    // Bounded: the process held at most REALTIME_MAX_BUFFER_KB (+ one event) for it, whatever was sent.
    expect(sent * 32).toBeGreaterThan(64)
    socket.destroy()
    await ctx.app.redis.del(ctx.app.realtime.keys.log(c.id))
  }, 30_000)
})

describe('shutdown', () => {
  it('tells SSE clients to retry and closes WebSockets with 1012 when the server closes', async () => {
    const sse = track(await openSse(base2, headersOf(a.viewer, a.slug)))
    const ws = await openWs(base2, headersOf(a.editor, a.slug))
    if (!isOpen(ws)) throw new Error('ws refused')
    const retriesBefore = sse.retries.length
    app2Closed = true
    await app2.close()
    await waitFor(() => sse.ended && ws.closed, { message: 'both told', timeout: 5000 })
    expect(sse.retries.length).toBeGreaterThan(retriesBefore)
    expect(sse.retries.at(-1)).toBeGreaterThanOrEqual(2000)
    expect(ws.closed).toEqual({ code: 1012, reason: 'shutdown' })
    expect(ctx.app.realtime.stats().connections).toBeGreaterThanOrEqual(0)
  })
})
