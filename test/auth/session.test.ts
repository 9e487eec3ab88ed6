/**
 * Sessions: sliding and absolute expiry with short configured times, cookie flags, signing-secret
 * rotation, and the session living in Redis (server-side state is the truth, not the cookie).
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashPassword } from '../../src/core/identity/password.js'
import type { Config } from '../../src/core/config.js'
import { buildApp } from '../helpers/build-app.js'
import { type Client, createClient, PASSWORD } from '../helpers/client.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

let env: TestEnv
let passwordHash: string
const apps: FastifyInstance[] = []

beforeAll(async () => {
  env = await createTestEnv()
  passwordHash = await hashPassword(PASSWORD)
})
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()))
  await env?.cleanup()
})

async function appWith(extra: Record<string, string>): Promise<FastifyInstance> {
  const app = await buildApp(env.configWith(extra))
  apps.push(app)
  return app
}

/** A user created directly (no personal tenant: these tests are about the session only), logged in. */
async function loggedIn(app: FastifyInstance, headers?: Record<string, string>) {
  const email = `s-${randomBytes(4).toString('hex')}@example.com`
  const user = await app.users.create({ email, name: 'S', passwordHash })
  const c = createClient(app)
  const login = await c.request({ method: 'POST', url: '/auth/login', payload: { email, password: PASSWORD }, headers })
  expect(login.statusCode, login.body).toBe(200)
  c.csrf = (await c.request({ method: 'GET', url: '/auth/csrf', headers })).json().token
  return { c, email, userId: user.id, login }
}

const sessionKey = (config: Config, c: Client) => `${config.redisPrefix}:sess:${decodeURIComponent(c.cookies.sid!).split('.')[0]}`

describe.concurrent('expiry', () => {
  it('sliding: activity keeps a 2 s session alive past 3 s; idle, it ends', async () => {
    const app = await appWith({ SESSION_MAX_AGE_S: '2' })
    const { c } = await loggedIn(app)
    const started = Date.now()
    let lastRequestAt = started
    // A request every half second: 1.5 s to spare before the 2 s idle limit, even on a loaded machine.
    while (Date.now() - started < 3500) {
      await sleep(500)
      lastRequestAt = Date.now()
      const res = await c.get('/me')
      expect(res.statusCode, `after ${Date.now() - started} ms`).toBe(200)
    }
    expect(Date.now() - started).toBeGreaterThan(3000)
    // Idle: watch the store (a request would itself be activity) until the session's TTL has run out, then ask.
    const key = sessionKey(env.config, c)
    await waitFor(async () => (await app.redis.exists(key)) === 0, { message: 'the idle session to expire in Redis' })
    expect(Date.now() - lastRequestAt).toBeGreaterThanOrEqual(1_900) // not before its idle time (2 s after the last save)
    const res = await c.get('/me')
    expect(res.statusCode).toBe(401)
    expect(res.json()).toMatchObject({ code: 'UNAUTHENTICATED' })
  })

  it('absolute: a 3 s session ends after 3 s however active it is', async () => {
    const app = await appWith({ SESSION_MAX_AGE_S: '60', SESSION_ABSOLUTE_MAX_S: '3' })
    const { c } = await loggedIn(app)
    const started = Date.now()
    for (let i = 0; i < 2; i++) {
      await sleep(700) // activity, well inside the 3 s (the point is that it doesn't extend the session)
      expect((await c.get('/me')).statusCode).toBe(200)
    }
    // A clock condition, not a wait for work: the session was created before `started`, so it is over 3 s old after this.
    await sleep(Math.max(0, 3300 - (Date.now() - started)))
    const expired = await c.get('/me')
    expect(expired.statusCode).toBe(401)
    expect(expired.json()).toEqual({ statusCode: 401, error: 'Unauthorized', message: expect.any(String), code: 'SESSION_EXPIRED' })
    // It was destroyed server-side, not just refused once.
    const after = await c.get('/me')
    expect(after.statusCode).toBe(401)
    expect(after.json().code).toBe('UNAUTHENTICATED')
  })
})

describe('cookie', () => {
  it('is httpOnly, SameSite=Lax, path /, expiring after SESSION_MAX_AGE_S, and not Secure in test', async () => {
    const app = await appWith({ SESSION_MAX_AGE_S: '1800' })
    const { login } = await loggedIn(app)
    const cookie = login.cookies.find((x) => x.name === 'sid') as { httpOnly?: boolean; secure?: boolean; expires?: Date } | undefined
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' })
    expect(cookie!.secure).toBeFalsy()
    const left = cookie!.expires!.getTime() - Date.now()
    expect(left).toBeGreaterThan(1790_000)
    expect(left).toBeLessThanOrEqual(1800_000)
  })

  it('is Secure with COOKIE_SECURE=true, and never set over plain http', async () => {
    const app = await appWith({ COOKIE_SECURE: 'true', TRUST_PROXY: 'true' })
    const https = { 'x-forwarded-proto': 'https' }
    const { c, login } = await loggedIn(app, https)
    expect(login.cookies.find((x) => x.name === 'sid')).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Lax', path: '/' })
    expect((await c.request({ method: 'GET', url: '/me', headers: https })).statusCode).toBe(200)

    const email = `plain-${randomBytes(4).toString('hex')}@example.com`
    await app.users.create({ email, passwordHash })
    const plain = await createClient(app).post('/auth/login', { email, password: PASSWORD })
    expect(plain.statusCode).toBe(200)
    expect(plain.cookies.find((x) => x.name === 'sid')).toBeUndefined()
  })

  it('is signed: a forged or altered id is refused', async () => {
    const app = await appWith({})
    const { c } = await loggedIn(app)
    const [id, sig] = decodeURIComponent(c.cookies.sid!).split('.')
    for (const forged of [`${id}.${'A'.repeat(sig!.length)}`, id!, `${id!.slice(0, -1)}${id!.endsWith('x') ? 'y' : 'x'}.${sig}`, 'garbage']) {
      const res = await app.inject({ url: '/me', cookies: { sid: forged } })
      expect(res.statusCode, forged).toBe(401)
      expect(res.json().code).toBe('UNAUTHENTICATED')
    }
  })

  it('rotates secrets: the newest signs, older ones still verify until dropped', async () => {
    const oldSecret = `old-${'o'.repeat(40)}`
    const newSecret = `new-${'n'.repeat(40)}`
    const before = await appWith({ SESSION_SECRETS: oldSecret })
    const { c } = await loggedIn(before)
    const oldCookie = c.cookies.sid!

    const rotated = await appWith({ SESSION_SECRETS: `${newSecret},${oldSecret}` })
    // A browser holding the old cookie stays logged in across requests: the cookie is re-issued under
    // the newest secret (same session id), not cleared after the first request.
    const browser = createClient(rotated)
    browser.cookies.sid = oldCookie
    expect((await browser.get('/me')).statusCode).toBe(200)
    const resigned = browser.cookies.sid
    expect(resigned).toBeDefined()
    expect(resigned).not.toBe(oldCookie)
    expect(decodeURIComponent(resigned!).split('.')[0]).toBe(decodeURIComponent(oldCookie).split('.')[0])
    expect((await browser.get('/me')).statusCode).toBe(200)

    const dropped = await appWith({ SESSION_SECRETS: newSecret })
    expect((await dropped.inject({ url: '/me', cookies: { sid: oldCookie } })).statusCode).toBe(401)
    expect((await dropped.inject({ url: '/me', cookies: { sid: resigned! } })).statusCode).toBe(200)
  })
})

describe('storage', () => {
  it('lives in Redis under the deployment prefix, with the inactivity TTL', async () => {
    const app = await appWith({ SESSION_MAX_AGE_S: '600' })
    const { c, userId } = await loggedIn(app)
    const key = sessionKey(env.config, c)
    expect(key.startsWith(`${env.config.redisPrefix}:sess:`)).toBe(true)
    const stored = JSON.parse((await app.redis.get(key))!)
    expect(stored).toMatchObject({ userId, createdAt: expect.any(Number) })
    const ttl = await app.redis.ttl(key)
    expect(ttl).toBeGreaterThan(590)
    expect(ttl).toBeLessThanOrEqual(600)
    // Nothing about the user is in the cookie itself: only the signed id.
    expect(decodeURIComponent(c.cookies.sid!)).not.toContain(userId)
  })

  it('deleting the key server-side logs the user out (within the cache TTL); logout deletes it', async () => {
    const app = await appWith({})
    const a = await loggedIn(app)
    expect((await a.c.get('/me')).statusCode).toBe(200)
    // Behind the kit's back (no invalidation): processes that cached the session see it within SESSION_CACHE_TTL_MS.
    await app.redis.del(sessionKey(env.config, a.c))
    const res = await waitFor(async () => {
      const r = await a.c.get('/me')
      return r.statusCode === 401 && r
    }, { message: 'the deleted session to be refused' })
    expect(res.json().code).toBe('UNAUTHENTICATED')

    const b = await loggedIn(app)
    const key = sessionKey(env.config, b.c)
    expect(await app.redis.exists(key)).toBe(1)
    expect((await b.c.post('/auth/logout')).statusCode).toBe(204)
    expect(await app.redis.exists(key)).toBe(0)
  })

  it('is shared by every instance: a session started on one app works on another', async () => {
    const one = await appWith({})
    const two = await appWith({})
    const { c } = await loggedIn(one)
    const res = await two.inject({ url: '/me', cookies: { sid: c.cookies.sid! } })
    expect(res.statusCode).toBe(200)
  })
})
