/**
 * Sign in with Google, end to end against a real OpenID provider (oauth2-mock-server over HTTP):
 * our /login → the provider's /authorize (real HTTP) → our /callback (inject, with the browser's
 * cookies) → code exchange and ID token verification over HTTP → session.
 */
import { createServer } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { MutableResponse } from 'oauth2-mock-server'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import app, { serverOptions } from '../../src/app.js'
import { buildApp } from '../helpers/build-app.js'
import { type Client, createClient, PASSWORD } from '../helpers/client.js'
import { type MockOidc, startMockOidc } from '../helpers/oidc.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const BASE = 'http://localhost:3000'
const CLIENT_ID = 'tenantkit-test-client'
const STATE_COOKIE = 'tk-oauth-state'
const VERIFIER_COOKIE = 'tk-oauth-verifier'

let mock: MockOidc

const oauthVars = (issuer: string) => ({
  GOOGLE_CLIENT_ID: CLIENT_ID,
  GOOGLE_CLIENT_SECRET: 'test-secret',
  OAUTH_ISSUER_URL: issuer,
  APP_BASE_URL: BASE,
})

beforeAll(async () => {
  mock = await startMockOidc()
})
afterAll(async () => {
  await mock?.close()
})
const ctx = useApp({}, { appVars: () => oauthVars(mock.issuerUrl), closeTimeoutMs: 180_000 })
beforeEach(() => {
  mock.setClaims({})
  mock.setUserinfo({})
  mock.server.service.removeAllListeners('beforeResponse')
})

let subCounter = 0
/** A Google identity with a fresh subject. */
const person = (email: string, extra: Record<string, unknown> = {}) => ({
  sub: `google-${++subCounter}-${Date.now()}`,
  email,
  email_verified: true,
  ...extra,
})

async function startLogin(c: Client, query = '') {
  const res = await c.get(`/auth/google/login${query}`)
  expect(res.statusCode, res.body).toBe(302)
  return res
}

/** The whole browser round trip; returns our callback's response and the callback URL the provider sent. */
async function googleLogin(c: Client, query = '') {
  const start = await startLogin(c, query)
  const back = await mock.authorize(start.headers.location as string)
  expect(`${back.origin}${back.pathname}`).toBe(`${BASE}/auth/google/callback`)
  const res = await c.get(`${back.pathname}${back.search}`)
  return { res, back }
}

const userByEmail = async (email: string) =>
  (
    await ctx.app.host.sql<{ id: string; google_id: string | null; password_hash: string | null; email_verified_at: Date | null }[]>`
    select id, google_id, password_hash, email_verified_at from core_users where lower(email) = lower(${email})`
  )[0]

const auditActions = async (userId: string) =>
  (
    await ctx.app.host.sql<{ action: string; metadata: Record<string, unknown> }[]>`
    select action, metadata from sys_audit_logs where actor_user_id = ${userId} and action like 'auth.%' order by created_at, id`
  ).map((r) => ({ action: r.action, ...r.metadata }))

describe('GET /auth/google/login', () => {
  it('redirects to the provider with state, PKCE S256, scopes and our callback URL, and sets signed httpOnly cookies', async () => {
    const res = await startLogin(createClient(ctx.app))
    const url = new URL(res.headers.location as string)
    expect(`${url.origin}${url.pathname}`).toBe(`${mock.issuerUrl}/authorize`)
    const q = Object.fromEntries(url.searchParams)
    expect(q).toMatchObject({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: `${BASE}/auth/google/callback`,
      scope: 'openid email profile',
      code_challenge_method: 'S256',
    })
    expect(q.state).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(q.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const cookies = Object.fromEntries(res.cookies.map((c) => [c.name, c]))
    for (const name of [STATE_COOKIE, VERIFIER_COOKIE]) {
      expect(cookies[name]).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' })
      // Signed: the raw value is "<value>.<signature>", never the bare state.
      expect(cookies[name]!.value).not.toBe(q.state)
    }
    expect(ctx.app.unsignCookie(cookies[STATE_COOKIE]!.value)).toEqual({ valid: true, renew: false, value: q.state })
  })

  it('refuses a `next` that would leave the site', async () => {
    for (const next of ['//evil.example/x', '/\\evil.example', 'https://evil.example/', 'projects', '/a\tb', '/a\\b']) {
      const res = await createClient(ctx.app).get(`/auth/google/login?next=${encodeURIComponent(next)}`)
      expect(res.statusCode, next).toBe(400)
      expect(res.json(), next).toMatchObject({ code: 'INVALID_NEXT' })
    }
    const tooLong = await createClient(ctx.app).get(`/auth/google/login?next=/${'a'.repeat(600)}`)
    expect(tooLong.json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
  })
})

describe('GET /auth/google/callback: signing in', () => {
  it('creates a first-time user with a verified email and a personal tenant, starts a session, and redirects home', async () => {
    const id = person('Ada.Lovelace@gmail.example', { name: 'Ada Lovelace' })
    mock.setClaims(id)
    const c = createClient(ctx.app)
    const { res } = await googleLogin(c)
    expect(res.statusCode, res.body).toBe(302)
    expect(res.headers.location).toBe(`${BASE}/`)
    expect(c.cookies.sid).toBeDefined()
    // The flow's cookies are single-use: cleared by the callback.
    expect(c.cookies[STATE_COOKIE]).toBeUndefined()
    expect(c.cookies[VERIFIER_COOKIE]).toBeUndefined()

    const me = (await c.get('/me')).json()
    expect(me.user).toMatchObject({ email: 'Ada.Lovelace@gmail.example', name: 'Ada Lovelace', emailVerified: true })
    expect(me.memberships).toHaveLength(1)
    expect(me.memberships[0]).toMatchObject({ role: 'owner', status: 'active', tenantStatus: 'active', name: "Ada Lovelace's workspace" })
    expect(me.memberships[0].slug).toMatch(/^ada-lovelace-[0-9a-f]{4}$/)
    expect(me.activeTenant.tenantId).toBe(me.memberships[0].tenantId)
    expect((await userByEmail('ada.lovelace@gmail.example'))?.google_id).toBe(id.sub)

    // The session works on the tenant API like a password session.
    await c.get('/auth/csrf').then((r) => (c.csrf = r.json().token))
    expect((await c.post('/api/projects', { name: 'Engine' })).statusCode).toBe(201)

    // Second login, same Google subject, from another browser: same user, no second tenant.
    const again = createClient(ctx.app)
    const second = await googleLogin(again)
    expect(second.res.statusCode).toBe(302)
    expect(again.cookies.sid).not.toBe(c.cookies.sid)
    const me2 = (await again.get('/me')).json()
    expect(me2.user.id).toBe(me.user.id)
    expect(me2.memberships).toEqual(me.memberships)
    const rows = await ctx.app.host.sql<
      { count: number }[]
    >`select count(*)::int as count from core_memberships where user_id = ${me.user.id}`
    expect(rows[0]?.count).toBe(1)

    expect(await auditActions(me.user.id)).toEqual([
      { action: 'auth.signup', method: 'google' },
      { action: 'auth.login', method: 'google', firstLogin: true },
      { action: 'auth.login', method: 'google', firstLogin: false },
    ])
  })

  it('finds the user by Google subject even when the provider now reports another email', async () => {
    const id = person('first@gmail.example')
    mock.setClaims(id)
    const c1 = createClient(ctx.app)
    await googleLogin(c1)
    const before = (await c1.get('/me')).json().user
    mock.setClaims({ ...id, email: 'renamed@gmail.example' })
    const c2 = createClient(ctx.app)
    expect((await googleLogin(c2)).res.statusCode).toBe(302)
    expect((await c2.get('/me')).json().user).toEqual(before)
    expect(await userByEmail('renamed@gmail.example')).toBeUndefined()
  })

  it('lands on the `next` path given at login', async () => {
    mock.setClaims(person('next@gmail.example'))
    const { res } = await googleLogin(createClient(ctx.app), `?next=${encodeURIComponent('/projects?tab=mine')}`)
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe(`${BASE}/projects?tab=mine`)
  })

  it('links an existing password account by verified email, and drops a password nobody verified', async () => {
    const c = createClient(ctx.app)
    const signup = await c.signup('grace@example.com', PASSWORD, 'Grace')
    expect(signup.statusCode).toBe(201)
    const { user, tenant } = signup.json()
    expect(user.emailVerified).toBe(false)

    const id = person('GRACE@example.com')
    mock.setClaims(id)
    const g = createClient(ctx.app)
    expect((await googleLogin(g)).res.statusCode).toBe(302)
    const me = (await g.get('/me')).json()
    expect(me.user).toMatchObject({ id: user.id, email: 'grace@example.com', emailVerified: true })
    // No new tenant: the existing personal tenant is the active one.
    expect(me.memberships.map((m: { tenantId: string }) => m.tenantId)).toEqual([tenant.id])
    expect(me.activeTenant.tenantId).toBe(tenant.id)
    expect(await userByEmail('grace@example.com')).toMatchObject({ google_id: id.sub, password_hash: null })
    const actions = await auditActions(user.id)
    expect(actions).toContainEqual({
      action: 'auth.oauth_link',
      provider: 'google',
      issuer: mock.issuerUrl,
      passwordCleared: true,
      removedFrom: [],
      revokedKeys: 0,
    })
    expect(actions.at(-1)).toEqual({ action: 'auth.login', method: 'google', firstLogin: false })
    // The password set before anyone proved owning the address no longer opens the account.
    expect((await createClient(ctx.app).login('grace@example.com')).statusCode).toBe(401)
  })

  it('keeps the password of an account whose email was already verified', async () => {
    const c = createClient(ctx.app)
    const { user } = (await c.signup('hopper@example.com')).json()
    await ctx.app.host.sql`update core_users set email_verified_at = now() where id = ${user.id}`
    mock.setClaims(person('hopper@example.com'))
    expect((await googleLogin(createClient(ctx.app))).res.statusCode).toBe(302)
    expect((await auditActions(user.id)).find((a) => a.action === 'auth.oauth_link')).toMatchObject({ passwordCleared: false })
    expect((await createClient(ctx.app).login('hopper@example.com')).statusCode).toBe(200)
  })

  it('refuses an email already linked to another Google identity', async () => {
    mock.setClaims(person('shared@gmail.example'))
    await googleLogin(createClient(ctx.app))
    const owner = await userByEmail('shared@gmail.example')
    mock.setClaims(person('shared@gmail.example'))
    const c = createClient(ctx.app)
    const { res } = await googleLogin(c)
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe(`${BASE}/login?error=account_conflict`)
    expect(c.cookies.sid).toBeUndefined()
    expect((await userByEmail('shared@gmail.example'))?.google_id).toBe(owner?.google_id)
  })

  it('refuses a user a platform admin disabled (back to the login page, no session)', async () => {
    const identity = person('disabled@gmail.example')
    mock.setClaims(identity)
    expect((await googleLogin(createClient(ctx.app))).res.statusCode).toBe(302)
    const user = await userByEmail('disabled@gmail.example')
    await ctx.app.host.sql`update core_users set disabled_at = now() where id = ${user!.id}`
    mock.setClaims(identity)
    const c = createClient(ctx.app)
    const { res } = await googleLogin(c)
    expect(res.headers.location).toBe(`${BASE}/login?error=account_disabled`)
    expect(c.cookies.sid).toBeUndefined()
    expect((await auditActions(user!.id)).at(-1)).toMatchObject({ action: 'auth.login_failed', reason: 'account_disabled' })
  })

  it('refuses an email the provider has not verified, and creates nothing', async () => {
    for (const email_verified of [false, undefined, 'false']) {
      mock.setClaims(person('unverified@gmail.example', { email_verified }))
      const c = createClient(ctx.app)
      const { res } = await googleLogin(c)
      expect(res.statusCode).toBe(302)
      expect(res.headers.location).toBe(`${BASE}/login?error=email_not_verified`)
      expect(c.cookies.sid).toBeUndefined()
      expect((await c.get('/me')).statusCode).toBe(401)
    }
    expect(await userByEmail('unverified@gmail.example')).toBeUndefined()
  })

  it('reads the email from userinfo when the ID token has none, and checks userinfo is about the same subject', async () => {
    const id = person('info@gmail.example', { name: 'Info' })
    mock.setClaims({ sub: id.sub })
    mock.setUserinfo(id)
    const c = createClient(ctx.app)
    const { res } = await googleLogin(c)
    expect(res.headers.location).toBe(`${BASE}/`)
    expect((await c.get('/me')).json().user).toMatchObject({ email: 'info@gmail.example', name: 'Info', emailVerified: true })

    mock.setClaims({ sub: 'someone-else' })
    const other = await googleLogin(createClient(ctx.app))
    expect(other.res.headers.location).toBe(`${BASE}/login?error=invalid_userinfo`)
  })

  it('refuses ID tokens with a wrong audience, issuer, expiry or signature', async () => {
    const now = Math.floor(Date.now() / 1000)
    const cases: [string, Record<string, unknown>][] = [
      ['aud', { aud: 'another-client' }],
      ['aud+azp', { aud: [CLIENT_ID, 'another-client'], azp: 'another-client' }],
      ['iss', { iss: 'https://accounts.evil.example' }],
      ['exp', { iat: now - 7200, exp: now - 3600 }],
      ['iat', { iat: now + 3600, exp: now + 7200 }],
      ['sub', { sub: '' }],
    ]
    for (const [label, claims] of cases) {
      mock.setClaims({ ...person(`bad-${label}@gmail.example`), ...claims })
      const c = createClient(ctx.app)
      const { res } = await googleLogin(c)
      expect(res.headers.location, label).toBe(`${BASE}/login?error=invalid_id_token`)
      expect(c.cookies.sid, label).toBeUndefined()
    }
    // Multiple audiences are fine when we are the authorized party.
    mock.setClaims({ ...person('azp-ok@gmail.example'), aud: [CLIENT_ID, 'another-client'], azp: CLIENT_ID })
    expect((await googleLogin(createClient(ctx.app))).res.headers.location).toBe(`${BASE}/`)

    // A token whose payload was changed after signing.
    mock.setClaims(person('victim@gmail.example'))
    mock.server.service.on('beforeResponse', (response: MutableResponse) => {
      const body = response.body as { id_token: string }
      const [h, p, s] = body.id_token.split('.') as [string, string, string]
      const payload = { ...JSON.parse(Buffer.from(p, 'base64url').toString()), email: 'admin@example.com' }
      body.id_token = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`
    })
    expect((await googleLogin(createClient(ctx.app))).res.headers.location).toBe(`${BASE}/login?error=invalid_id_token`)
    expect(await userByEmail('admin@example.com')).toBeUndefined()
    // An unsigned ("alg: none") token.
    mock.server.service.removeAllListeners('beforeResponse')
    mock.server.service.on('beforeResponse', (response: MutableResponse) => {
      const body = response.body as { id_token: string }
      const [, p] = body.id_token.split('.') as [string, string]
      body.id_token = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${p}.`
    })
    expect((await googleLogin(createClient(ctx.app))).res.headers.location).toBe(`${BASE}/login?error=invalid_id_token`)
  })
})

describe('pre-account takeover: what the squatter obtained with the password stops working', () => {
  const sessionKey = (c: Client) => `${ctx.env.config.redisPrefix}:sess:${decodeURIComponent(c.cookies.sid!).split('.')[0]}`
  const useKey = (app: FastifyInstance, secret: string) =>
    app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${secret}` } })
  /** Pub/sub reaches other processes asynchronously: poll (well under the 30 s windows that would also end it). */
  const eventually = async (probe: () => Promise<number>, want: number) => {
    let status = 0
    // On timeout the caller's expect reports the last status seen.
    await waitFor(async () => {
      status = await probe()
      return status === want
    }).catch(() => {})
    return status
  }

  it("ends the squatter's sessions and API keys when the owner signs in with Google, in every process, at once", async () => {
    const squatter = createClient(ctx.app)
    expect((await squatter.signup('victim@takeover.example')).statusCode).toBe(201)
    // An unverified account can't create keys any more (403 EMAIL_NOT_VERIFIED): this one predates that rule.
    expect((await squatter.post('/api/api-keys', { name: 'backdoor', role: 'admin' })).json().code).toBe('EMAIL_NOT_VERIFIED')
    const squatted = (await squatter.get('/me')).json()
    const { secret } = await ctx.app.apiKeys.create({
      tenantId: squatted.activeTenant.tenantId,
      createdBy: squatted.user.id,
      name: 'backdoor',
      role: 'admin',
    })
    // A second instance, holding the same session (shared store) and the key in its cache.
    const other = await buildApp(ctx.env.configWith(oauthVars(mock.issuerUrl)))
    try {
      const squatterThere = createClient(other)
      squatterThere.cookies = { ...squatter.cookies }
      expect((await squatterThere.get('/me')).statusCode).toBe(200)
      expect((await useKey(ctx.app, secret)).statusCode).toBe(200)
      expect((await useKey(other, secret)).statusCode).toBe(200)
      expect((await squatter.get('/me')).statusCode).toBe(200) // the session's user snapshot is fresh

      mock.setClaims(person('victim@takeover.example'))
      const victim = createClient(ctx.app)
      expect((await googleLogin(victim)).res.statusCode).toBe(302)

      const me = await squatter.get('/me')
      expect(me.statusCode).toBe(401)
      expect(me.json().code).toBe('SESSION_REVOKED')
      expect(await ctx.app.redis.exists(sessionKey(squatter))).toBe(0) // destroyed, not just refused
      expect((await useKey(ctx.app, secret)).json()).toMatchObject({ statusCode: 401, code: 'INVALID_API_KEY' })
      expect(await eventually(async () => (await squatterThere.get('/me')).statusCode, 401)).toBe(401)
      expect(await eventually(async () => (await useKey(other, secret)).statusCode, 401)).toBe(401)

      // The owner's own session and new keys work, here and there.
      expect((await victim.get('/me')).statusCode).toBe(200)
      await victim.get('/auth/csrf').then((r) => (victim.csrf = r.json().token))
      const own = await victim.post('/api/api-keys', { name: 'mine', role: 'admin' })
      expect(own.statusCode, own.body).toBe(201)
      expect((await useKey(ctx.app, own.json().secret)).statusCode).toBe(200)
      expect((await useKey(other, own.json().secret)).statusCode).toBe(200)
    } finally {
      await other.close()
    }
  })

  it('enforces sessions_valid_after from the DB when no message arrived: at the next user re-read, and for uncached keys', async () => {
    const c = createClient(ctx.app)
    const { user } = (await c.signup('reread@takeover.example')).json()
    await ctx.app.host.sql`update core_users set email_verified_at = now() where id = ${user.id}`
    const secret = (await c.post('/api/api-keys', { name: 'k', role: 'viewer' })).json().secret as string
    // Written behind the app's back: no process heard of it, so the session's fresh snapshot still passes.
    await ctx.app.host.sql`update core_users set sessions_valid_after = now() + interval '1 second' where id = ${user.id}`
    expect((await c.get('/me')).statusCode).toBe(200)
    // The snapshot ages past its 30 s (rewritten in the store rather than waited for): the re-read refuses.
    const key = sessionKey(c)
    const stored = JSON.parse((await ctx.app.redis.get(key))!)
    await ctx.app.redis.set(key, JSON.stringify({ ...stored, userLoadedAt: 0 }), 'KEEPTTL')
    await ctx.app.sessions.drop(key.slice(key.lastIndexOf(':') + 1)) // written behind the kit's back: drop cached copies
    expect((await c.get('/me')).json()).toMatchObject({ statusCode: 401, code: 'SESSION_REVOKED' })
    expect(await ctx.app.redis.exists(key)).toBe(0)
    // Never cached: read with its creator's cutoff.
    expect((await useKey(ctx.app, secret)).json()).toMatchObject({ statusCode: 401, code: 'INVALID_API_KEY' })
  })
})

describe("reproduction 2: what a squatter built into a pre-registered address doesn't survive the owner's Google sign-in", () => {
  it('removes the account from the shared tenant (its co-owner stays behind), revokes its keys, mails the other owners, and starts the owner elsewhere', async () => {
    const squatter = createClient(ctx.app)
    const signup = await squatter.signup('owner@squatted.example')
    expect(signup.statusCode).toBe(201)
    const squattedTenant = signup.json().tenant.id as string
    const squatterId = signup.json().user.id as string
    // The squatter's second account, made co-owner of the squatted tenant (the invitation flow needs a verified
    // address to accept ownership; this is the state such an account could reach before that rule existed).
    const accomplice = createClient(ctx.app)
    const second = (await accomplice.signup('accomplice@squatter.example')).json().user.id as string
    await ctx.app.tenancy.memberships.add(second, squattedTenant, 'owner')
    // An unverified account can't mint keys through the API any more; one minted before that rule:
    expect((await squatter.post('/api/api-keys', { name: 'backdoor', role: 'admin' })).json().code).toBe('EMAIL_NOT_VERIFIED')
    const { key, secret } = await ctx.app.apiKeys.create({
      tenantId: squattedTenant,
      createdBy: squatterId,
      name: 'backdoor',
      role: 'admin',
    })
    // And the squatter chose the squatted tenant as where the account starts.
    expect((await squatter.put('/me/active-tenant', { tenant: squattedTenant })).statusCode).toBe(200)

    mock.setClaims(person('owner@squatted.example'))
    const victim = createClient(ctx.app)
    expect((await googleLogin(victim)).res.statusCode).toBe(302)

    const me = (await victim.get('/me')).json()
    expect(me.user.id).toBe(squatterId) // the same account, now the owner's
    expect(me.memberships.map((m: { tenantId: string }) => m.tenantId)).not.toContain(squattedTenant)
    expect(me.activeTenant).not.toBeNull()
    expect(me.activeTenant.tenantId).not.toBe(squattedTenant)
    expect(await ctx.app.tenancy.memberships.find(squatterId, squattedTenant)).toBeUndefined()
    // The accomplice is left with their own tenant, and no longer shares anything with the owner.
    expect(await ctx.app.tenancy.memberships.find(second, squattedTenant)).toMatchObject({ role: 'owner' })
    const [row] = await ctx.app.host.sql<{ revoked_at: Date | null }[]>`select revoked_at from core_api_keys where id = ${key.id}`
    expect(row!.revoked_at).not.toBeNull()
    expect((await ctx.app.inject({ url: '/api/projects', headers: { authorization: `Bearer ${secret}` } })).statusCode).toBe(401)
    // The squatted tenant's other owner is told, through the email job.
    const mails = await ctx.app.host.sql<{ payload: { to: string; template: string; variables: Record<string, string> } }[]>`
      select payload from sys_jobs where job_type = 'email.send' and payload->>'template' = 'member_removed'`
    expect(mails.map((m) => m.payload)).toContainEqual(
      expect.objectContaining({
        to: 'accomplice@squatter.example',
        variables: expect.objectContaining({ member_email: 'owner@squatted.example' }),
      }),
    )
    const [linked] = await ctx.app.host.sql<{ metadata: { removedFrom: string[]; revokedKeys: number } }[]>`
      select metadata from sys_audit_logs where action = 'auth.oauth_link' and actor_user_id = ${squatterId}`
    expect(linked!.metadata).toMatchObject({ removedFrom: [squattedTenant], revokedKeys: 1 })
  })

  it('keeps a tenant the unverified account created and never shared', async () => {
    const early = createClient(ctx.app)
    const signup = (await early.signup('solo@squatted.example')).json()
    mock.setClaims(person('solo@squatted.example'))
    const owner = createClient(ctx.app)
    expect((await googleLogin(owner)).res.statusCode).toBe(302)
    const me = (await owner.get('/me')).json()
    expect(me.memberships.map((m: { tenantId: string }) => m.tenantId)).toEqual([signup.tenant.id])
    expect(me.activeTenant.tenantId).toBe(signup.tenant.id)
  })
})

describe('GET /auth/google/callback: state and provider errors', () => {
  it('answers 400 OAUTH_STATE_INVALID for a missing, foreign, forged or unknown state', async () => {
    mock.setClaims(person('state@gmail.example'))
    const c = createClient(ctx.app)
    const start = await startLogin(c)
    const back = await mock.authorize(start.headers.location as string)
    const code = back.searchParams.get('code')!
    const state = back.searchParams.get('state')!
    const attempts: [string, { url: string; cookies?: Record<string, string> }][] = [
      ['no state', { url: `/auth/google/callback?code=${code}`, cookies: c.cookies }],
      ['wrong state', { url: `/auth/google/callback?code=${code}&state=${'x'.repeat(32)}`, cookies: c.cookies }],
      // The attacker's link opened in a browser that never started this flow (login CSRF).
      ['no cookie', { url: `/auth/google/callback?code=${code}&state=${state}` }],
      ['unsigned cookie', { url: `/auth/google/callback?code=${code}&state=${state}`, cookies: { [STATE_COOKIE]: state } }],
    ]
    for (const [label, { url, cookies }] of attempts) {
      const res = await ctx.app.inject({ url, cookies })
      expect(res.statusCode, label).toBe(400)
      expect(res.json(), label).toMatchObject({ statusCode: 400, code: 'OAUTH_STATE_INVALID' })
      expect(
        res.cookies.find((x) => x.name === 'sid'),
        label,
      ).toBeUndefined()
    }
    // None of those consumed the real flow: the browser that started it still finishes it.
    const ok = await c.get(`${back.pathname}${back.search}`)
    expect(ok.statusCode).toBe(302)
    expect(ok.headers.location).toBe(`${BASE}/`)
  })

  it('refuses a replayed callback, even with the original cookies', async () => {
    mock.setClaims(person('replay@gmail.example'))
    const c = createClient(ctx.app)
    const start = await startLogin(c)
    const flowCookies = { ...c.cookies }
    const back = await mock.authorize(start.headers.location as string)
    const first = await c.get(`${back.pathname}${back.search}`)
    expect(first.statusCode).toBe(302)
    const replay = await ctx.app.inject({ url: `${back.pathname}${back.search}`, cookies: flowCookies })
    expect(replay.statusCode).toBe(400)
    expect(replay.json()).toMatchObject({ code: 'OAUTH_STATE_INVALID' })
  })

  it('rejects a callback with neither code nor error', async () => {
    const res = await ctx.app.inject({ url: '/auth/google/callback?state=abc' })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ code: 'OAUTH_CALLBACK_INVALID' })
  })

  it('sends a provider error to the login page with its reason, and retires the state', async () => {
    const c = createClient(ctx.app)
    const start = await startLogin(c)
    const state = new URL(start.headers.location as string).searchParams.get('state')!
    const flowCookies = { ...c.cookies }
    const res = await c.get(`/auth/google/callback?error=access_denied&error_description=User+said+no&state=${state}`)
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe(`${BASE}/login?error=access_denied`)
    expect(c.cookies[STATE_COOKIE]).toBeUndefined()
    // The state can't be used afterwards.
    const late = await ctx.app.inject({ url: `/auth/google/callback?code=whatever&state=${state}`, cookies: flowCookies })
    expect(late.json()).toMatchObject({ code: 'OAUTH_STATE_INVALID' })

    const odd = await createClient(ctx.app).get(`/auth/google/callback?error=${encodeURIComponent('<script>alert(1)</script>')}`)
    expect(odd.headers.location).toBe(`${BASE}/login?error=provider_error`)
  })

  it('maps a token endpoint failure to provider_unavailable and a refused code to code_rejected', async () => {
    mock.setClaims(person('flaky@gmail.example'))
    mock.server.service.on('beforeResponse', (response: MutableResponse) => {
      response.statusCode = 503
      response.body = { error: 'temporarily_unavailable' }
    })
    expect((await googleLogin(createClient(ctx.app))).res.headers.location).toBe(`${BASE}/login?error=provider_unavailable`)

    mock.server.service.removeAllListeners('beforeResponse')
    mock.server.service.on('beforeResponse', (response: MutableResponse) => {
      response.statusCode = 400
      response.body = { error: 'invalid_grant' }
    })
    expect((await googleLogin(createClient(ctx.app))).res.headers.location).toBe(`${BASE}/login?error=code_rejected`)
    expect(await userByEmail('flaky@gmail.example')).toBeUndefined()
  })

  it('maps an unreachable provider to provider_unavailable, never a 500', async () => {
    const gone = await startMockOidc()
    const other = await buildApp(ctx.env.configWith(oauthVars(gone.issuerUrl)))
    try {
      gone.setClaims(person('offline@gmail.example'))
      const c = createClient(other)
      const start = await c.get('/auth/google/login')
      const back = await gone.authorize(start.headers.location as string)
      await gone.close()
      const res = await c.get(`${back.pathname}${back.search}`)
      expect(res.statusCode).toBe(302)
      expect(res.headers.location).toBe(`${BASE}/login?error=provider_unavailable`)
    } finally {
      await other.close()
      await gone.close()
    }
  })
})

describe('configuration', () => {
  it('documents both routes in OpenAPI, with the redirect and its Location header', async () => {
    const spec = (await ctx.app.inject('/docs/json')).json()
    for (const path of ['/auth/google/login', '/auth/google/callback']) {
      const op = spec.paths[path]?.get
      expect(op?.tags, path).toEqual(['auth'])
      expect(op.responses['302'].headers.location.schema, path).toMatchObject({ type: 'string' })
      expect(Object.keys(op.responses), path).toEqual(expect.arrayContaining(['302', '400', '503']))
    }
    expect(spec.paths['/auth/google/callback'].get.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['code', 'state', 'error']),
    )
  })

  it('answers 503 OAUTH_DISABLED when no client id is configured', async () => {
    const plain = await buildApp(ctx.env.config)
    try {
      for (const url of ['/auth/google/login', '/auth/google/callback?code=x&state=y']) {
        const res = await plain.inject({ url })
        expect(res.statusCode, url).toBe(503)
        expect(res.json(), url).toMatchObject({ statusCode: 503, code: 'OAUTH_DISABLED' })
        expect(res.json().message).toMatch(/GOOGLE_CLIENT_ID/)
      }
    } finally {
      await plain.close()
    }
  })

  it('refuses to boot when the issuer cannot be discovered, naming the variable', async () => {
    const port = await closedPort()
    const fastify = Fastify({ ...serverOptions(ctx.env.config), logger: false })
    try {
      const boot = async () => {
        await fastify.register(fp(app), { config: ctx.env.configWith(oauthVars(`http://127.0.0.1:${port}`)) })
        await fastify.ready()
      }
      await expect(boot()).rejects.toThrow(/OIDC discovery failed for OAUTH_ISSUER_URL=http:\/\/127\.0\.0\.1/)
    } finally {
      await fastify.close().catch(() => undefined)
    }
  })
})

/** A local port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as { port: number }
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}
