/**
 * /api/events: the tenant's domain events as they happen (events.ts lists them), behind the same guard
 * as every /api route (session or API key, the tenant resolved, membership and status checked), for any
 * member (viewer and up; subscription changes to admins only):
 *
 * - GET /api/events/stream: Server-Sent Events. `id:` is the event's seq: reconnecting with
 *   `Last-Event-ID` (or `?lastEventId=`) replays what was missed from the tenant's replay buffer
 *   (`event: reset` when some of it is gone); `: hb` comment lines on an idle stream every REALTIME_HEARTBEAT_S.
 * - GET /api/events/ws: the same events as JSON text messages on a WebSocket (pinged every
 *   REALTIME_HEARTBEAT_S). Browsers can't send headers on a WebSocket, so the session cookie is the way
 *   in for pages, and the Origin must be APP_BASE_URL's or in REALTIME_ALLOWED_ORIGINS (a page elsewhere
 *   can't ride a user's cookie: 403 ORIGIN_NOT_ALLOWED).
 *
 * Both count against the tenant's cap (its plan's `realtimeConnections` under REALTIME_MAX_PER_TENANT) and
 * REALTIME_MAX_PER_USER (429 REALTIME_CONNECTION_LIMIT)
 * and hold no tenant database connection while open (`config.longLived`).
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppOptions } from '../../core/config.js'
import { AppError, forbidden } from '../../core/lib/errors.js'
import { errorResponses } from '../../core/lib/schemas.js'
import { ROLE_LEVEL } from '../../core/tenancy/rbac.js'
import { limitOf } from '../billing/index.js'
import { SEQ_PATTERN } from './events.js'
import { type CloseReason, ConnectionLimitError, type RealtimeClient, type StartAt } from './hub.js'

/** What the routes use of a `ws` WebSocket (the kit has no @types/ws; @fastify/websocket hands one to wsHandler). */
interface ServerSocket {
  readonly bufferedAmount: number
  send(data: string): void
  ping(): void
  close(code: number, reason: string): void
  terminate(): void
  on(event: 'pong', listener: () => void): unknown
  once(event: 'close', listener: () => void): unknown
}

const Seq = Type.String({ pattern: SEQ_PATTERN, description: 'The `seq` (SSE `id:`) of the last event received' })
const ResumeQuery = Type.Object({ lastEventId: Type.Optional(Seq) }, { additionalProperties: false })
const ResumeHeaders = Type.Object({ 'last-event-id': Type.Optional(Seq) })

/** Clients reconnect after this (ms), spread so a restart isn't answered by every client at once. */
const RETRY_MS = 2000
const retryJitter = () => RETRY_MS + Math.floor(Math.random() * 3000)

/** WebSocket close codes: 1012 service restart (reconnect), 4000 reconnect (the guard decides again), 4401 credentials ended, 4403 no longer allowed. */
export const WS_CLOSE_CODES: Record<CloseReason, number> = {
  shutdown: 1012,
  reconnect: 4000,
  membership_ended: 4403,
  credentials_ended: 4401,
  tenant_unavailable: 4403,
  slow_consumer: 1008,
  dead_peer: 1001,
}

const EVENT_DOC =
  'Each event: `{ seq, id, type, occurredAt, data }` (`seq` orders the events of a tenant and is what a client resumes from; `id` is the event’s UUID, the same as its webhook deliveries’). Types: project.created, project.updated, project.deleted, member.joined, member.left, subscription.changed (admins only).'

const realtimeRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const hub = fastify.realtime
  const allowedOrigins = new Set(config.realtime.allowedOrigins)
  const access = { minRole: 'viewer' } as const

  const who = (req: FastifyRequest) => ({ tenantId: req.tenant!.id, userId: req.user!.id })
  const base = (req: FastifyRequest, id: string) => ({
    id,
    ...who(req),
    level: ROLE_LEVEL[req.role!],
    membershipRole: req.membership!.role,
    credentials: req.apiKey ? { apiKeyId: req.apiKey.id } : { sessionId: req.session.sessionId, sessionCreatedAt: req.session.createdAt },
  })
  /** The tenant's cap: its plan's `realtimeConnections` under REALTIME_MAX_PER_TENANT (0 there: the plan's alone). */
  async function tenantCap(tenantId: string): Promise<number> {
    const plan = limitOf(await fastify.entitlements.get(tenantId), 'realtimeConnections')
    const ceiling = config.realtime.maxPerTenant
    if (plan === null) return ceiling
    if (plan <= 0) throw new ConnectionLimitError('tenant', 0)
    return ceiling > 0 ? Math.min(plan, ceiling) : plan
  }
  async function admit(req: FastifyRequest): Promise<string> {
    try {
      return await hub.admit(who(req), { tenant: await tenantCap(req.tenant!.id), user: config.realtime.maxPerUser })
    } catch (err) {
      if (err instanceof ConnectionLimitError) {
        throw new AppError(
          429,
          'REALTIME_CONNECTION_LIMIT',
          `Too many open realtime connections for this ${err.scope} (at most ${err.limit}); close one first`,
          {
            scope: err.scope,
            limit: err.limit,
          },
        )
      }
      throw err
    }
  }

  /**
   * A connection slot and where its stream starts, read before the client hears it is connected (the SSE
   * headers, the WebSocket upgrade): an event published once it sees the stream open must reach it.
   */
  async function open(req: FastifyRequest, lastEventId: string | undefined): Promise<{ id: string; start: StartAt }> {
    const id = await admit(req)
    try {
      return { id, start: await hub.startAt(req.tenant!.id, lastEventId) }
    } catch (err) {
      await hub.release({ ...who(req), id })
      throw err
    }
  }

  fastify.get(
    '/stream',
    {
      config: { access, longLived: true, requestDeadline: false },
      schema: {
        tags: ['realtime'],
        summary: 'The tenant’s events as Server-Sent Events',
        description: `A \`text/event-stream\` that stays open: \`id: <seq>\`, \`event: <type>\`, \`data: <JSON>\` per event; \`: hb\` comment lines as heartbeats on an idle stream; \`event: reset\` when events to resume from are gone (refetch); \`event: close\` with the reason when access ended. Reconnect with \`Last-Event-ID\` (EventSource does) or \`?lastEventId=\` to get what was missed. ${EVENT_DOC}`,
        querystring: ResumeQuery,
        headers: ResumeHeaders,
        response: {
          200: {
            description: 'The event stream',
            content: { 'text/event-stream': { schema: Type.String({ description: 'Server-Sent Events' }) } },
          },
          ...errorResponses(400, 401, 403, 404, 409, 429, 503),
        },
      },
    },
    async (req, reply) => {
      const { id, start } = await open(req, req.headers['last-event-id'] ?? req.query.lastEventId)
      const res = reply.raw
      // The client may have gone while it was admitted: its 'close' has fired already and won't again.
      if (res.destroyed || res.writableEnded || req.raw.socket?.destroyed) {
        await hub.release({ ...who(req), id })
        return reply.hijack()
      }
      reply.hijack()
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        // nginx and other proxies: don't hold the events back.
        'x-accel-buffering': 'no',
      })
      res.write(`retry: ${RETRY_MS}\n\n`)
      const client = sseClient(res, base(req, id))
      res.once('close', () => hub.detach(client))
      await hub.attach(client, start)
    },
  )

  fastify.route({
    method: 'GET',
    url: '/ws',
    config: { access, longLived: true, requestDeadline: false },
    schema: {
      tags: ['realtime'],
      summary: 'The tenant’s events on a WebSocket',
      description: `A WebSocket handshake (\`Upgrade: websocket\`); the server sends one JSON text message per event, and \`{ "type": "reset", "reason" }\` when events to resume from are gone. Resume with \`?lastEventId=\`. The Origin of a browser's handshake must be APP_BASE_URL's or in REALTIME_ALLOWED_ORIGINS. Close codes: 1012 server restart (reconnect), 4000 reconnect, 4401 credentials ended (logout, session or API key revoked), 4403 access ended (membership removed, tenant suspended), 1008 too slow a reader. ${EVENT_DOC}`,
      querystring: ResumeQuery,
      response: {
        101: { description: 'Switching Protocols: the WebSocket is open' },
        ...errorResponses(400, 401, 403, 404, 409, 426, 429, 503),
      },
    },
    onRequest(req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) {
      const origin = req.headers.origin
      // Browsers always send Origin on a WebSocket handshake; other clients (no ambient cookie) may not.
      if (origin !== undefined && !allowedOrigins.has(origin))
        return done(forbidden('ORIGIN_NOT_ALLOWED', 'This page’s origin may not open the event WebSocket'))
      done()
    },
    // Before the upgrade, so a refusal is an HTTP answer (429 JSON), not a socket closed on arrival.
    async preHandler(req) {
      if (req.ws) slots.set(req, await open(req, (req.query as { lastEventId?: string }).lastEventId))
    },
    handler() {
      throw new AppError(426, 'UPGRADE_REQUIRED', 'This is a WebSocket endpoint: send a WebSocket handshake')
    },
    wsHandler(socket, req) {
      const { id, start } = slots.get(req)!
      const client = wsClient(socket as ServerSocket, base(req, id))
      socket.once('close', () => hub.detach(client))
      hub.attach(client, start).catch((err) => req.log.warn({ err }, 'realtime: attaching a WebSocket failed'))
    },
  })
  const slots = new WeakMap<FastifyRequest, { id: string; start: StartAt }>()
}

function sseClient(
  res: ServerResponse,
  base: Omit<RealtimeClient, 'kind' | 'write' | 'buffered' | 'heartbeat' | 'reset' | 'close'>,
): RealtimeClient {
  return {
    ...base,
    kind: 'sse',
    write: (frame) => void res.write(frame.sse),
    buffered: () => res.writableLength,
    heartbeat(idle) {
      // Only an idle stream needs one: events keep proxies and clients from timing it out as well.
      if (idle) res.write(': hb\n\n')
      return true
    },
    reset: (reason) => void res.write(`event: reset\ndata: {"reason":"${reason}"}\n\n`),
    close(reason) {
      if (res.destroyed || res.writableEnded) return
      // Nothing more can get through to a reader that stopped reading.
      if (reason === 'slow_consumer') return void res.destroy()
      if (reason === 'shutdown' || reason === 'reconnect') res.write(`retry: ${retryJitter()}\n\n`)
      else res.write(`event: close\ndata: {"reason":"${reason}"}\n\n`)
      res.end()
    },
  }
}

function wsClient(
  socket: ServerSocket,
  base: Omit<RealtimeClient, 'kind' | 'write' | 'buffered' | 'heartbeat' | 'reset' | 'close'>,
): RealtimeClient {
  let alive = true
  socket.on('pong', () => {
    alive = true
  })
  return {
    ...base,
    kind: 'ws',
    write: (frame) => socket.send(frame.json),
    buffered: () => socket.bufferedAmount,
    heartbeat() {
      if (!alive) return false
      alive = false
      socket.ping()
      return true
    },
    reset: (reason) => socket.send(JSON.stringify({ type: 'reset', reason })),
    close(reason) {
      if (reason === 'slow_consumer' || reason === 'dead_peer') return socket.terminate()
      socket.close(WS_CLOSE_CODES[reason], reason)
    },
  }
}

export default realtimeRoutes
