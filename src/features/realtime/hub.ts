/**
 * The realtime hub of one API process: its clients (SSE and WebSocket alike, behind `RealtimeClient`),
 * ONE Redis subscriber connection for every client (a channel per tenant with clients here, subscribed
 * with the first and dropped with the last), and what ends a client:
 *
 * - membership: every membership invalidation (removal, role change; from any process, the core's
 *   invalidation bus) re-reads the membership of the clients it concerns: gone or inactive → closed
 *   ('membership_ended'), another role → closed so the client reconnects through the guard ('reconnect');
 * - credentials: a session destroyed (logout, revoke-all, password change: the sessions and
 *   session-revocations channels) or an API key revoked (the api-keys channel) ends its clients
 *   ('credentials_ended'; a change to the key's creator: 'reconnect', the guard decides again);
 * - tenant status: every catalog invalidation of a tenant with clients here re-reads it; no longer active
 *   (suspended, deleted) → its clients are closed ('tenant_unavailable');
 * - backpressure: a client whose unsent bytes exceed REALTIME_MAX_BUFFER_KB after a write is dropped
 *   ('slow_consumer'): the process never buffers more than that per client;
 * - shutdown: SSE clients get a `retry:` and the end of the stream, WebSockets close 1012 (reconnect).
 *
 * Each event is serialised once per process (events.ts, `Frame`) and written to each client whose role
 * may see it. Every client starts from a position in its tenant's stream: the Last-Event-ID it resumes
 * from, or else the tenant's newest event, read (`startAt`) before the client is told it is connected.
 * It is attached first (live events wait in its queue), then sent what the stream holds past that
 * position, then its queue; seq orders and dedupes the two. So an event published as soon as the client
 * sees its stream open reaches it, however long the subscription took (a fresh client once missed it).
 * When the subscriber reconnects (messages may have been lost), each tenant catches up from its stream.
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Config } from '../../core/config.js'
import { createInvalidationBus, type InvalidationBus, type Subscription } from '../../core/lib/invalidated-cache.js'
import type { CatalogHandle } from '../../core/tenancy/catalog.js'
import { catalogChannel } from '../../core/tenancy/catalog.js'
import type { Memberships } from '../../core/tenancy/memberships.js'
import { compareSeq, type Frame, frameOf } from './events.js'
import {
  acquireSlot,
  type ConnectionCaps,
  newestSeq,
  type RealtimeKeys,
  readSince,
  realtimeKeys,
  refreshSlots,
  releaseSlot,
} from './stream.js'

export type CloseReason =
  | 'membership_ended'
  | 'tenant_unavailable'
  | 'credentials_ended'
  | 'reconnect'
  | 'slow_consumer'
  | 'shutdown'
  | 'dead_peer'

/** How the client got in: its session (id, when it started) or its API key. */
export interface ClientCredentials {
  sessionId?: string
  sessionCreatedAt?: number
  apiKeyId?: string
}

/** One open stream, whatever carries it (routes.ts adapts SSE responses and WebSockets). */
export interface RealtimeClient {
  readonly id: string
  readonly kind: 'sse' | 'ws'
  readonly tenantId: string
  readonly userId: string
  /** ROLE_LEVEL of the effective role the guard gave it. */
  readonly level: number
  /** The membership role it connected with (a change ends it: the guard decides again). */
  readonly membershipRole: string
  readonly credentials: ClientCredentials
  write(frame: Frame): void
  /** Unsent bytes held in this process. */
  buffered(): number
  /** A heartbeat (`idle`: nothing was written since the last one); false: the peer missed the last one (a WebSocket that sent no pong). */
  heartbeat(idle: boolean): boolean
  /** A gap in the replay: the client should refetch what it shows. */
  reset(reason: string): void
  close(reason: CloseReason): void
}

interface ClientState {
  client: RealtimeClient
  /** The last seq written (replay and live may overlap). */
  lastSeq: string | undefined
  /** Live frames held while its replay is read. */
  queue: Frame[] | null
  closed: boolean
  /** Something was written since its last heartbeat (an SSE stream that isn't idle needs no comment line). */
  wrote: boolean
  /** Its heartbeat slice (heartbeats are spread over the interval, never all clients at once). */
  slice: number
}

interface TenantState {
  clients: Set<ClientState>
  subscription: Subscription
  /** The last seq this process heard for the tenant (the subscriber's catch-up starts there). */
  lastSeq: string | undefined
  /** Live frames held while the tenant catches up after a subscriber reconnect. */
  held: Frame[] | null
}

export interface RealtimeHubDeps {
  /** The app's Redis client (commands); the hub duplicates it once for its subscriber. */
  redis: Redis
  /** The core's invalidation bus: catalog invalidations (tenant status). */
  coreBus: InvalidationBus
  catalog: CatalogHandle
  memberships: Pick<Memberships, 'find' | 'onInvalidate'>
  /** The key's row (revoked, expiry), read when the api-keys channel names it. */
  apiKeyStatus(keyId: string): Promise<{ revokedAt: Date | null; expiresAt: Date | null }[]>
  config: Pick<Config, 'redisPrefix' | 'redisCluster' | 'realtime'>
  logger: Logger
  /** Called for every client dropped or closed by the hub (metrics). */
  onClose?: (reason: CloseReason, kind: 'sse' | 'ws') => void
  onDeliver?: (count: number) => void
}

/** Where a client's stream starts: after `after`; `resumed`: the client's own Last-Event-ID (a gap there is reported to it). */
export interface StartAt {
  after: string
  resumed: boolean
}

export class ConnectionLimitError extends Error {
  constructor(
    readonly scope: 'tenant' | 'user',
    readonly limit: number,
  ) {
    super(`too many realtime connections (${scope})`)
  }
}

const REPLAY_BATCH = 1000
/** Heartbeat ticks per REALTIME_HEARTBEAT_S, each for its share of the clients. */
const SLICES = 10

export function createRealtimeHub(deps: RealtimeHubDeps) {
  const { redis, config, logger } = deps
  const rt = config.realtime
  const keys: RealtimeKeys = realtimeKeys(config.redisPrefix, config.redisCluster)
  const bus = createInvalidationBus(redis, logger, 'realtime subscriber')
  const tenants = new Map<string, TenantState>()
  const byId = new Map<string, ClientState>()
  // Indexes for the invalidations, which name a user, a session or a key (never a scan of every client).
  const byUser = new Map<string, Set<ClientState>>()
  const bySession = new Map<string, Set<ClientState>>()
  const byKey = new Map<string, Set<ClientState>>()
  const index = (map: Map<string, Set<ClientState>>, key: string | undefined, state: ClientState, add: boolean) => {
    if (!key) return
    const set = map.get(key) ?? new Set<ClientState>()
    if (add) {
      set.add(state)
      map.set(key, set)
    } else if (set.delete(state) && set.size === 0) map.delete(key)
  }
  const indexAll = (state: ClientState, add: boolean) => {
    index(byUser, state.client.userId, state, add)
    index(bySession, state.client.credentials.sessionId, state, add)
    index(byKey, state.client.credentials.apiKeyId, state, add)
  }
  const of = (map: Map<string, Set<ClientState>>, key: string) => [...(map.get(key) ?? [])]
  const lapseMs = 3 * rt.heartbeatMs + 5000
  let closing = false

  // --- delivery -------------------------------------------------------------------------------------

  function deliver(state: ClientState, frame: Frame): boolean {
    if (state.closed || state.client.level < frame.minLevel) return false
    if (state.lastSeq !== undefined && compareSeq(frame.seq, state.lastSeq) <= 0) return false
    state.lastSeq = frame.seq
    state.wrote = true
    state.client.write(frame)
    if (state.client.buffered() > rt.maxBufferBytes) end(state, 'slow_consumer')
    return true
  }

  function dispatch(tenant: TenantState, frame: Frame) {
    if (tenant.lastSeq !== undefined && compareSeq(frame.seq, tenant.lastSeq) <= 0) return
    tenant.lastSeq = frame.seq
    let n = 0
    for (const state of tenant.clients) {
      if (state.queue) state.queue.push(frame)
      else if (deliver(state, frame)) n++
    }
    if (n) deps.onDeliver?.(n)
  }

  function onMessage(tenant: TenantState, message: string) {
    const nl = message.indexOf('\n')
    const sp = message.indexOf(' ')
    if (nl < 0 || sp < 0 || sp > nl) return
    const frame = frameOf(message.slice(0, sp), message.slice(sp + 1, nl), message.slice(nl + 1))
    if (tenant.held) tenant.held.push(frame)
    else dispatch(tenant, frame)
  }

  /** After a subscriber reconnect: what the tenant's stream holds past the last event heard here. */
  async function catchUp(tenantId: string, tenant: TenantState) {
    if (tenant.held || tenant.lastSeq === undefined) return
    tenant.held = []
    try {
      const { entries } = await readSince(redis, keys.log(tenantId), tenant.lastSeq, REPLAY_BATCH)
      for (const e of entries) dispatch(tenant, frameOf(e.seq, e.type, e.body))
    } catch (err) {
      logger.warn({ err, tenantId }, 'realtime: catching up after a subscriber reconnect failed')
    } finally {
      const held = tenant.held ?? []
      tenant.held = null
      for (const f of held) dispatch(tenant, f)
    }
  }

  function tenantState(tenantId: string): TenantState {
    let tenant = tenants.get(tenantId)
    if (tenant) return tenant
    const state: TenantState = { clients: new Set(), lastSeq: undefined, held: null, subscription: undefined as unknown as Subscription }
    state.subscription = bus.listen(keys.channel(tenantId), {
      message: (m) => onMessage(state, m),
      reconnected: () => void catchUp(tenantId, state),
    })
    tenants.set(tenantId, state)
    tenant = state
    return tenant
  }

  // --- ending clients -----------------------------------------------------------------------------------

  function end(state: ClientState, reason: CloseReason) {
    if (state.closed) return
    detach(state.client)
    try {
      state.client.close(reason)
    } catch (err) {
      logger.warn({ err, reason }, 'realtime: closing a client failed')
    }
    deps.onClose?.(reason, state.client.kind)
  }

  const clientsOf = (tenantId: string | undefined, userId?: string): ClientState[] => {
    if (userId) return of(byUser, userId).filter((s) => !tenantId || s.client.tenantId === tenantId)
    return tenantId ? [...(tenants.get(tenantId)?.clients ?? [])] : [...byId.values()]
  }

  async function recheckMembers(states: ClientState[]) {
    const groups = new Map<string, ClientState[]>()
    for (const s of states) {
      const k = `${s.client.userId}:${s.client.tenantId}`
      groups.set(k, [...(groups.get(k) ?? []), s])
    }
    await Promise.all(
      [...groups.values()].map(async (group) => {
        const { userId, tenantId } = group[0]!.client
        try {
          const m = await deps.memberships.find(userId, tenantId)
          for (const s of group) {
            if (m?.status !== 'active') end(s, 'membership_ended')
            else if (m.role !== s.client.membershipRole) end(s, 'reconnect')
          }
        } catch (err) {
          logger.warn({ err, userId, tenantId }, 'realtime: re-reading a membership failed; the clients stay until the next change')
        }
      }),
    )
  }

  async function recheckTenant(tenantId: string) {
    if (!tenants.has(tenantId)) return
    try {
      const t = await deps.catalog.get(tenantId)
      if (t?.status !== 'active') for (const s of clientsOf(tenantId)) end(s, 'tenant_unavailable')
    } catch (err) {
      logger.warn({ err, tenantId }, 'realtime: re-reading a tenant failed; its clients stay until the next change')
    }
  }

  deps.memberships.onInvalidate((key, tenantId) => {
    if (closing || byId.size === 0) return
    if (key) {
      const sep = key.indexOf(':')
      void recheckMembers(clientsOf(key.slice(sep + 1), key.slice(0, sep)))
    } else void recheckMembers(clientsOf(tenantId))
  })
  const catalogWatch = deps.coreBus.listen(catalogChannel(config.redisPrefix), {
    message(message) {
      let id: unknown
      try {
        id = message.startsWith('{') ? JSON.parse(message).id : message
      } catch {
        return
      }
      // After the catalog's own listener (registered first) dropped its entry: the read is fresh.
      if (typeof id === 'string') void recheckTenant(id.toLowerCase())
    },
    reconnected() {
      for (const id of tenants.keys()) void recheckTenant(id)
    },
  })

  // The core's credential channels (src/core/plugins/session.ts, src/core/identity/plugin.ts name them so).
  const sessionKey = (id: string) => `${config.redisPrefix}:sess:${id}`
  const watches = [
    // `<origin> <session id>` on every save and destroy: ended when its session is gone from Redis.
    deps.coreBus.listen(`${config.redisPrefix}:sessions`, {
      message(message) {
        const id = message.slice(message.indexOf(' ') + 1)
        const holders = of(bySession, id)
        if (holders.length === 0) return
        redis.exists(sessionKey(id)).then(
          (n) => {
            if (n === 0) for (const s of holders) end(s, 'credentials_ended')
          },
          (err) => logger.warn({ err }, 'realtime: re-reading a session failed'),
        )
      },
      reconnected() {},
    }),
    // `<user id> <ms>`: that user's sessions started before are void.
    deps.coreBus.listen(`${config.redisPrefix}:session-revocations`, {
      message(message) {
        const [userId, ms] = message.split(' ')
        const cutoff = Number(ms)
        for (const s of of(byUser, userId ?? '')) {
          const c = s.client
          if (c.credentials.sessionId && (c.credentials.sessionCreatedAt ?? 0) < cutoff) end(s, 'credentials_ended')
        }
      },
      reconnected() {},
    }),
    // `<key id>` after a key changed (revoked), `user:<user id>` after its creator's cutoff moved.
    deps.coreBus.listen(`${config.redisPrefix}:api-keys`, {
      message(message) {
        if (message.startsWith('user:')) {
          for (const s of of(byUser, message.slice(5))) if (s.client.credentials.apiKeyId) end(s, 'reconnect')
        } else for (const s of of(byKey, message)) void recheckKey(s)
      },
      reconnected() {},
    }),
  ]
  async function recheckKey(state: ClientState) {
    try {
      const [row] = await deps.apiKeyStatus(state.client.credentials.apiKeyId!)
      if (!row || row.revokedAt !== null || (row.expiresAt !== null && row.expiresAt <= new Date())) end(state, 'credentials_ended')
    } catch (err) {
      logger.warn({ err }, 'realtime: re-reading an API key failed')
    }
  }

  // --- heartbeats and connection slots -------------------------------------------------------------

  // Each client's heartbeat and slot refresh come once per REALTIME_HEARTBEAT_S, in one of SLICES ticks
  // spread over it: writing to every client and refreshing every slot in one tick stalled delivery for
  // everyone (bench:realtime, 5,000 clients: p99 2.1 s against the bare fan-out's 89 ms).
  const slices = Array.from({ length: SLICES }, () => new Set<ClientState>())
  let nextSlice = 0
  let tick = 0
  const beat = setInterval(
    () => {
      const slice = [...slices[tick++ % SLICES]!]
      for (const state of slice) {
        if (state.closed) continue
        const idle = !state.wrote
        state.wrote = false
        if (!state.client.heartbeat(idle)) end(state, 'dead_peer')
        else if (state.client.buffered() > rt.maxBufferBytes) end(state, 'slow_consumer')
      }
      const held = slice.filter((s) => !s.closed).map((s) => s.client)
      refreshSlots(redis, keys, held, lapseMs).catch((err) => logger.warn({ err }, 'realtime: refreshing connection slots failed'))
    },
    Math.max(1, Math.floor(rt.heartbeatMs / SLICES)),
  )
  beat.unref()

  function detach(client: RealtimeClient) {
    const state = byId.get(client.id)
    if (!state || state.closed) return
    state.closed = true
    byId.delete(client.id)
    indexAll(state, false)
    slices[state.slice]!.delete(state)
    const tenant = tenants.get(client.tenantId)
    if (tenant) {
      tenant.clients.delete(state)
      if (tenant.clients.size === 0) {
        tenants.delete(client.tenantId)
        void tenant.subscription.stop()
      }
    }
    releaseSlot(redis, keys, client).catch((err) => logger.warn({ err }, 'realtime: releasing a connection slot failed'))
  }

  return {
    keys,
    /** A fresh connection id, counted against the caps (ConnectionLimitError when either is reached). */
    async admit(
      who: { tenantId: string; userId: string },
      caps: ConnectionCaps = { tenant: rt.maxPerTenant, user: rt.maxPerUser },
    ): Promise<string> {
      const id = randomUUID()
      const taken = await acquireSlot(redis, keys, { ...who, id }, caps, lapseMs)
      if (taken === 1) throw new ConnectionLimitError('tenant', caps.tenant)
      if (taken === 2) throw new ConnectionLimitError('user', caps.user)
      return id
    },
    /** Give back a slot admitted for a connection that never opened. */
    release: (who: { tenantId: string; userId: string; id: string }) => releaseSlot(redis, keys, who),

    /**
     * Where a client connecting now starts: after `lastEventId` when it resumes, else after the tenant's
     * newest event. Read before the client hears it is connected (the SSE headers, the WebSocket upgrade).
     */
    async startAt(tenantId: string, lastEventId?: string): Promise<StartAt> {
      if (lastEventId) return { after: lastEventId, resumed: true }
      return { after: await newestSeq(redis, keys.log(tenantId)), resumed: false }
    },

    /**
     * Start streaming to `client` (admitted under its id): what the tenant's stream holds past `start`,
     * then live events. Resolves once subscribed and that replay is written.
     */
    async attach(client: RealtimeClient, start: StartAt): Promise<void> {
      if (closing) {
        client.close('shutdown')
        return
      }
      const state: ClientState = {
        client,
        lastSeq: undefined,
        queue: [],
        closed: false,
        wrote: false,
        slice: nextSlice++ % SLICES,
      }
      byId.set(client.id, state)
      indexAll(state, true)
      slices[state.slice]!.add(state)
      const tenant = tenantState(client.tenantId)
      tenant.clients.add(state)
      try {
        await tenant.subscription.ready
      } catch (err) {
        end(state, 'reconnect')
        throw err
      }
      try {
        let after = start.after
        let first = true
        for (;;) {
          const { entries, gap } = await readSince(redis, keys.log(client.tenantId), after, REPLAY_BATCH)
          if (state.closed) return
          // Only the client's own position can have a gap: the newest event at connect time may be
          // trimmed or expired since, which loses nothing this client was owed.
          if (first && gap && start.resumed) client.reset('replay_gap')
          first = false
          for (const e of entries) deliver(state, frameOf(e.seq, e.type, e.body))
          if (entries.length < REPLAY_BATCH) break
          after = entries[entries.length - 1]!.seq
        }
      } catch (err) {
        logger.warn({ err, tenantId: client.tenantId }, 'realtime: reading the replay buffer failed')
        if (!state.closed) client.reset('replay_unavailable')
      } finally {
        const queued = state.queue ?? []
        state.queue = null
        for (const f of queued) deliver(state, f)
      }
    },
    detach,
    /** Tell every client to reconnect (elsewhere, or here after the restart) and stop taking new ones. */
    shutdown() {
      closing = true
      for (const state of [...byId.values()]) end(state, 'shutdown')
    },
    stats() {
      let sse = 0
      for (const s of byId.values()) if (s.client.kind === 'sse') sse++
      return { connections: byId.size, sse, ws: byId.size - sse, tenants: tenants.size }
    },
    async close() {
      closing = true
      clearInterval(beat)
      for (const state of [...byId.values()]) end(state, 'shutdown')
      await Promise.all([catalogWatch, ...watches].map((w) => w.stop()))
      await bus.close()
    },
  }
}

export type RealtimeHub = ReturnType<typeof createRealtimeHub>
