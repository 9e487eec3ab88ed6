/**
 * The per-process session cache (src/core/identity/sessions.ts) must not weaken revocation: two app
 * instances share Redis, the second has the session cached, and logout, a password change, revoke-all,
 * an admin disable and an admin revoke-sessions on the first make the second refuse the old cookie within
 * the invalidation latency. The cache TTL is a minute here, so a refusal inside waitFor's 15 s is the
 * invalidation's doing, not the TTL's.
 */
import type { FastifyInstance } from 'fastify'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { users } from '../../drizzle/host/schema.js'
import { buildApp } from '../helpers/build-app.js'
import { type Client, createClient } from '../helpers/client.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

let env: TestEnv
let one: FastifyInstance
let two: FastifyInstance

beforeAll(async () => {
  env = await createTestEnv()
  const config = env.configWith({ SESSION_CACHE_TTL_MS: '60000' })
  one = await buildApp(config)
  two = await buildApp(config)
})
afterAll(async () => {
  await one?.close()
  await two?.close()
  await env?.cleanup()
})

const sid = (c: Client) => decodeURIComponent(c.cookies.sid!).split('.')[0]!
const onTwo = (cookie: string) => two.inject({ url: '/me', cookies: { sid: cookie } })

/** A user logged in on app one whose session app two has read (and so cached). */
async function cachedOnTwo(label: string): Promise<Member & { cookie: string }> {
  const m = await newMember(one, label, { signIn: true })
  const cookie = m.c.cookies.sid!
  // A read that raced an invalidation (one's own saves at login) is not stored: read until it is.
  await waitFor(async () => {
    expect((await onTwo(cookie)).statusCode).toBe(200)
    return two.sessions.cached(sid(m.c))
  }, { message: 'app two to cache the session' })
  return { ...m, cookie }
}

/** Polls app two with the old cookie until it is refused; the answer it ended on. */
async function refusedOnTwo(cookie: string) {
  const res = await waitFor(
    async () => {
      const r = await onTwo(cookie)
      return r.statusCode === 401 && r
    },
    { message: 'app two to refuse the old cookie' },
  )
  return res.json().code as string
}

describe('the cache', () => {
  it('serves a session it read without Redis, until the session is dropped everywhere', async () => {
    const m = await cachedOnTwo('cached')
    // Deleted behind the kit's back (no invalidation): app two still has it, which is what the cache is for.
    await one.redis.del(`${env.config.redisPrefix}:sess:${sid(m.c)}`)
    expect((await onTwo(m.cookie)).statusCode).toBe(200)
    // The kit's own drop reaches every process.
    await one.sessions.drop(sid(m.c))
    expect(await refusedOnTwo(m.cookie)).toBe('UNAUTHENTICATED')
  })

  it('sees a save made in another process at once (the user snapshot after a rename)', async () => {
    const m = await cachedOnTwo('rename')
    expect((await onTwo(m.cookie)).json().user.name).toBe('rename')
    expect((await m.c.patch('/me', { name: 'Renamed' })).statusCode).toBe(200)
    // Two's cached snapshot would otherwise live on for the cache TTL (and the snapshot's own 30 s).
    await waitFor(async () => (await onTwo(m.cookie)).json().user.name === 'Renamed', { message: 'app two to see the renamed snapshot' })
  })

  it('verifies a cookie once: a forged signature for a cached id is still refused', async () => {
    const m = await cachedOnTwo('forged')
    const [id, sig] = decodeURIComponent(m.cookie).split('.')
    const forged = `${id}.${'A'.repeat(sig!.length)}`
    const res = await two.inject({ url: '/me', cookies: { sid: forged } })
    expect(res.statusCode).toBe(401)
    expect((await onTwo(m.cookie)).statusCode).toBe(200)
  })
})

describe('revocation reaches a process that has the session cached', () => {
  it('logout', async () => {
    const m = await cachedOnTwo('logout')
    expect((await m.c.post('/auth/logout')).statusCode).toBe(204)
    expect(await refusedOnTwo(m.cookie)).toBe('UNAUTHENTICATED')
  })

  it('password change (this session continues under a new id; the old cookie is dead everywhere)', async () => {
    const m = await cachedOnTwo('password')
    const other = createClient(one)
    expect((await other.login(m.email)).statusCode).toBe(200)
    const otherCookie = other.cookies.sid!
    expect((await onTwo(otherCookie)).statusCode).toBe(200)
    const res = await m.c.post('/me/password', { currentPassword: 'correct horse battery staple', newPassword: 'a different horse entirely 42' })
    expect(res.statusCode, res.body).toBe(204)
    expect(await refusedOnTwo(m.cookie)).toBe('UNAUTHENTICATED')
    expect(await refusedOnTwo(otherCookie)).toBe('SESSION_REVOKED')
    expect((await onTwo(m.c.cookies.sid!)).statusCode).toBe(200)
  })

  it('revoke-all', async () => {
    const m = await cachedOnTwo('revoke-all')
    const other = createClient(one)
    expect((await other.login(m.email)).statusCode).toBe(200)
    const otherCookie = other.cookies.sid!
    expect((await onTwo(otherCookie)).statusCode).toBe(200)
    expect((await m.c.post('/me/sessions/revoke-all')).statusCode).toBe(204)
    expect(await refusedOnTwo(m.cookie)).toBe('UNAUTHENTICATED')
    expect(await refusedOnTwo(otherCookie)).toBe('SESSION_REVOKED')
  })

  it('admin disable', async () => {
    const ops = await newMember(one, 'ops')
    await one.host.db.update(users).set({ isPlatformAdmin: true }).where(eq(users.id, ops.id))
    await ops.signIn()
    const m = await cachedOnTwo('disabled')
    const res = await ops.c.post(`/admin/api/users/${m.id}/disable`, {})
    expect(res.statusCode, res.body).toBe(200)
    expect(await refusedOnTwo(m.cookie)).toBe('SESSION_REVOKED')
  })
})
