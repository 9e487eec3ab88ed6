/**
 * Server-side sessions, lean (issue 14). The cookie holds only a signed id; the session is JSON in Redis
 * under `<prefix>:sess:<id>` with the inactivity TTL (the format connect-redis wrote for @fastify/session:
 * the fields plus `cookie.expires`, so sessions survive a switch either way).
 *
 * What replaced @fastify/session, and why: a read-only request used to pay an HMAC to unsign the cookie,
 * a Redis GET, two SHA-256 digests of the whole session (change detection at construction and at send),
 * and, without a cookie (every API-key request), a new id, an HMAC and a digest for a session nobody saves.
 * Here:
 * - each process caches what it read (`SESSION_CACHE_TTL_MS`, bounded LRU, never past the session's own
 *   expiry) together with the cookie string it verified, so a cookie is unsigned once per cache entry and
 *   a hit is a Map lookup, no Redis;
 * - writes are tracked by a Proxy `set` trap (assign top-level fields: mutating a nested object in place is
 *   not seen), so reading costs nothing and a session is saved only when a field changed;
 * - a request without a cookie gets an empty session; its id is drawn only if something is saved.
 *
 * Coherence (src/core/lib/invalidated-cache.ts): every save and every destroy (logout, regenerate,
 * revocation) drops the id in this process and publishes it on `channel`, so every other process drops
 * its copy within the pub/sub latency; a load that raced a drop is not stored, and a subscriber reconnect
 * clears the cache. Password changes, revoke-all and admin disables need nothing more: they publish a
 * cutoff that requireUser checks against the session's `createdAt` on every request, cached or not.
 * A session changed or deleted in Redis behind the kit's back is seen within the TTL (or `drop(id)`).
 */
import { randomBytes } from 'node:crypto'
import { Signer } from '@fastify/cookie'
import type { Redis } from 'ioredis'
import { createInvalidatedCache, type InvalidationBus } from '../lib/invalidated-cache.js'

/** The fields a session holds (augmented by the session plugin's `interface Session`). */
export type SessionFields = Record<string, unknown>

const kState = Symbol('sessionState')

interface SessionState {
  /** The stored session's id; undefined until saved (a fresh, regenerated or destroyed session). */
  id: string | undefined
  /** A field changed (or touch()): save on send. */
  dirty: boolean
  /** The cookie was signed with an older secret: re-issue it under the newest one. */
  renew: boolean
  target: SessionObject
  sessions: Sessions
}

/** The methods every session has beside its fields. */
export interface SessionControl {
  /** The stored id, undefined until the session is first saved. */
  readonly sessionId: string | undefined
  /** Mark the session for saving, which restarts its inactivity clock (Redis TTL and cookie expiry). */
  touch(): void
  /** A new id with no fields (the old session is deleted everywhere now): call at login, against fixation. */
  regenerate(): Promise<void>
  /** Delete the session everywhere now; the request continues with an empty one and its cookie is cleared. */
  destroy(): Promise<void>
}

class SessionObject implements SessionControl {
  declare [kState]: SessionState
  get sessionId() {
    return this[kState].id
  }
  touch() {
    this[kState].dirty = true
  }
  async regenerate() {
    const state = this[kState]
    if (state.id) await state.sessions.remove(state.id)
    clearFields(state.target)
    state.id = undefined
    state.dirty = true
  }
  async destroy() {
    const state = this[kState]
    if (state.id) await state.sessions.remove(state.id)
    clearFields(state.target)
    state.id = undefined
    state.dirty = false
  }
}

const clearFields = (target: SessionObject) => {
  for (const key of Object.keys(target)) delete (target as unknown as SessionFields)[key]
}

// One handler for all sessions: reads go straight to the target, writes mark the session dirty.
const tracking: ProxyHandler<SessionObject> = {
  set(target, key, value) {
    const fields = target as unknown as Record<string | symbol, unknown>
    if (typeof key === 'string' && fields[key] !== value) target[kState].dirty = true
    fields[key] = value
    return true
  },
  deleteProperty(target, key) {
    if (typeof key === 'string' && Object.hasOwn(target, key)) target[kState].dirty = true
    return delete (target as unknown as Record<string | symbol, unknown>)[key]
  },
}

interface Cached {
  fields: SessionFields
  /** When the session expires in Redis (ms since epoch), as of the read or save that produced this entry. */
  expiresAt: number
  /** Served from the cache until then: min(read + TTL, expiresAt). */
  until: number
  /** The cookie string verified for this id, and whether it was signed with an older secret. */
  cookie?: string
  renew?: boolean
}

export interface SessionsDeps {
  redis: Redis
  bus: InvalidationBus
  /** The Redis key prefix, e.g. `tk:sess:`. */
  prefix: string
  channel: string
  /** Newest first: the first signs, all verify. */
  secrets: string[]
  maxAgeS: number
  /** 0 = no cache (every request reads Redis; loads of one id at a time still share one GET). */
  cacheTtlMs: number
  cacheMax?: number
}

export interface SaveResult {
  /** The signed cookie value to send. */
  cookie: string
  expires: Date
}

export type Sessions = ReturnType<typeof createSessions>

export function createSessions({ redis, bus, prefix, channel, secrets, maxAgeS, cacheTtlMs, cacheMax = 20_000 }: SessionsDeps) {
  const signer = new Signer(secrets, 'sha256')
  const maxAgeMs = maxAgeS * 1000
  // Our own saves and drops come back on the channel: skip them (the cache already holds the news).
  const origin = randomBytes(6).toString('base64url')

  async function read(id: string): Promise<Cached | undefined> {
    const raw = await redis.get(prefix + id)
    if (!raw) return undefined
    const { cookie, ...fields } = JSON.parse(raw) as SessionFields & { cookie?: { expires?: string } }
    const now = Date.now()
    const expiresAt = cookie?.expires ? Date.parse(cookie.expires) : now + maxAgeMs
    if (!(expiresAt > now)) return undefined
    return { fields, expiresAt, until: Math.min(now + cacheTtlMs, expiresAt) }
  }

  const cache = createInvalidatedCache<string, Cached>({
    bus,
    channel,
    max: cacheMax,
    ttlMs: cacheTtlMs,
    load: read,
    onMessage(message, c) {
      const space = message.indexOf(' ')
      if (space > 0 && message.slice(0, space) !== origin) c.drop(message.slice(space + 1))
    },
  })

  const make = (id: string | undefined, fields: SessionFields | undefined, renew: boolean) => {
    const target = new SessionObject()
    // Fields are copied: each request gets its own object (a cached entry is never written through).
    if (fields) Object.assign(target, fields)
    Object.defineProperty(target, kState, { value: { id, dirty: renew, renew, target, sessions: api } satisfies SessionState })
    return new Proxy(target, tracking) as SessionObject & SessionFields
  }

  /** Tell every process (this one at once) that `id` changed or ended. */
  async function dropEverywhere(id: string) {
    cache.drop(id)
    await cache.publish(`${origin} ${id}`)
  }

  const api = {
    ready: cache.ready,

    /**
     * The session a cookie names: an empty one without a cookie or with a bad, unknown or expired one.
     * Synchronous on a cache hit (no promise on the hot path).
     */
    open(cookie: string | undefined): (SessionObject & SessionFields) | Promise<SessionObject & SessionFields> {
      if (!cookie) return make(undefined, undefined, false)
      const dot = cookie.lastIndexOf('.')
      if (dot > 0) {
        const id = cookie.slice(0, dot)
        const hit = cache.get(id)
        if (hit && hit.cookie === cookie && Date.now() < hit.until) return make(id, hit.fields, hit.renew === true)
      }
      const { valid, renew, value } = signer.unsign(cookie)
      if (!valid || !value) return make(undefined, undefined, false)
      return (cacheTtlMs > 0 ? cache.load(value) : read(value)).then((entry) => {
        if (!entry || !(Date.now() < entry.expiresAt)) return make(undefined, undefined, false)
        entry.cookie = cookie
        entry.renew = renew
        return make(value, entry.fields, renew)
      })
    },

    /** What the session needs on send: 'save' (changed), 'clear' (the request's cookie names no live session), or nothing. */
    pending(session: SessionControl, hadCookie: boolean): 'save' | 'clear' | undefined {
      const state = (session as SessionObject)[kState]
      if (state.dirty && (state.id || Object.keys(state.target).length > 0)) return 'save'
      if (hadCookie && !state.id) return 'clear'
      return undefined
    },

    /** Write the session with a fresh TTL (a new id if it has none) and return the cookie to send. */
    async save(session: SessionControl): Promise<SaveResult> {
      const state = (session as SessionObject)[kState]
      state.id ??= randomBytes(24).toString('base64url')
      const id = state.id
      const now = Date.now()
      const expiresAt = now + maxAgeMs
      const fields: SessionFields = { ...state.target }
      const cookieJson = { originalMaxAge: maxAgeMs, expires: new Date(expiresAt).toISOString() }
      await redis.set(prefix + id, JSON.stringify({ cookie: cookieJson, ...fields }), 'EX', maxAgeS)
      state.dirty = false
      state.renew = false
      const signed = signer.sign(id)
      await dropEverywhere(id)
      if (cacheTtlMs > 0) cache.set(id, { fields, expiresAt, until: Math.min(now + cacheTtlMs, expiresAt), cookie: signed, renew: false })
      return { cookie: signed, expires: new Date(expiresAt) }
    },

    /** Delete a session everywhere now. */
    async remove(id: string) {
      await redis.del(prefix + id)
      await dropEverywhere(id)
    },

    /** Forget a cached session in every process (after changing it in Redis by other means). */
    drop: dropEverywhere,

    /** Whether this process holds `id` in its cache (tests, diagnostics). */
    cached: (id: string) => cache.get(id) !== undefined,

    stats: () => ({ size: cache.size }),

    close: () => cache.close(),
  }
  return api
}
