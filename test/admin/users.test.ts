/** /admin/api/users: platform admins search people, read one, disable (sessions and API keys stop at once) and enable. */
import { beforeAll, describe, expect, it } from 'vitest'
import { createClient } from '../helpers/client.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { auditRows, platformAdmin, UA, ua } from './helpers.js'

const ctx = useApp()
let ops: Member
let plain: Member
let target: Member
let tenant: { id: string; slug: string }
let apiKey: string

beforeAll(async () => {
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  target = await newMember(ctx.app, 'target-person')
  tenant = await ctx.app.services.provisioner.provision({ slug: 'target-co', name: 'Target Co', ownerUserId: target.id })
  await target.signIn()
  apiKey = (await ctx.app.apiKeys.create({ tenantId: tenant.id, createdBy: target.id, name: 'ci', role: 'viewer' })).secret
})

const get = (m: Member, url: string) => m.c.get(url, ua)
const post = (m: Member, url: string, body?: unknown) => m.c.post(url, body, ua)
const withKey = (key: string) =>
  ctx.app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${key}`, 'x-tenant-id': tenant.slug } })

describe('who may call /admin/api/users', () => {
  it('anonymous: 401; a user who is no platform admin: 403 PLATFORM_ADMIN_REQUIRED', async () => {
    const some = '00000000-0000-4000-8000-000000000000'
    for (const [method, url] of [
      ['GET', '/admin/api/users'],
      ['GET', `/admin/api/users/${some}`],
      ['POST', `/admin/api/users/${target.id}/disable`],
      ['POST', `/admin/api/users/${target.id}/enable`],
      ['POST', `/admin/api/users/${target.id}/revoke-sessions`],
    ] as const) {
      expect((await ctx.app.inject({ method, url })).statusCode, `${method} ${url}`).toBe(401)
      const denied = await plain.c.request({ method, url })
      expect(denied.statusCode, `${method} ${url}`).toBe(403)
      expect(denied.json()).toMatchObject({ statusCode: 403, code: 'PLATFORM_ADMIN_REQUIRED' })
    }
    const untouched = await ctx.app.users.findById(target.id)
    expect(untouched?.disabledAt).toBeNull()
    expect(untouched?.sessionsRevokedAt).toBeNull()
  })
})

describe('GET /admin/api/users', () => {
  it('searches email and name, filters, pages newest first', async () => {
    const found = (await get(ops, '/admin/api/users?q=TARGET-PERSON')).json()
    expect(found.items).toHaveLength(1)
    expect(found.items[0]).toMatchObject({ id: target.id, email: target.email, emailVerified: false, platformAdmin: false, disabledAt: null, membershipsCount: 1 })
    const admins = (await get(ops, '/admin/api/users?platformAdmin=true')).json()
    expect(admins.items.map((u: { id: string }) => u.id)).toEqual([ops.id])
    const first = (await get(ops, '/admin/api/users?limit=1')).json()
    expect(first.items).toHaveLength(1)
    const second = (await get(ops, `/admin/api/users?limit=1&cursor=${first.nextCursor}`)).json()
    expect(second.items[0].id < first.items[0].id).toBe(true)
  })

  it('refuses bad input with the kit’s error body', async () => {
    for (const query of ['limit=0', 'cursor=x', 'disabled=perhaps', 'other=1']) {
      const res = await get(ops, `/admin/api/users?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, error: 'Bad Request', code: expect.any(String) })
    }
  })
})

describe('GET /admin/api/users/:id', () => {
  it('shows memberships, verification and platform admin status', async () => {
    const res = await get(ops, `/admin/api/users/${target.id}`)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({
      id: target.id,
      emailVerified: false,
      platformAdmin: false,
      platformAdminSources: [],
      sessionsRevokedAt: null,
      memberships: [{ tenantId: tenant.id, slug: 'target-co', role: 'owner', status: 'active', tenantStatus: 'active' }],
    })
    expect((await get(ops, `/admin/api/users/${ops.id}`)).json()).toMatchObject({ platformAdmin: true, platformAdminSources: ['granted'] })
    expect((await get(ops, '/admin/api/users/00000000-0000-4000-8000-000000000000')).json()).toMatchObject({ code: 'USER_NOT_FOUND' })
    expect((await get(ops, '/admin/api/users/not-an-id')).statusCode).toBe(400)
  })
})

describe('disable and enable', () => {
  it('disable stops the user’s sessions and API keys at once, and login refuses them', async () => {
    expect((await target.c.get('/me')).statusCode).toBe(200)
    expect((await withKey(apiKey)).statusCode).toBe(200)

    const res = await post(ops, `/admin/api/users/${target.id}/disable`)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ id: target.id, outcome: 'done', disabledAt: expect.any(String) })
    const [entry] = await auditRows(ctx.app, 'admin.user_disabled', target.id)
    expect(entry).toMatchObject({ actorUserId: ops.id, targetType: 'user', userAgent: UA, ip: expect.stringMatching(/^10\./) })

    const me = await target.c.get('/me')
    expect(me.statusCode).toBe(401)
    expect(me.json()).toMatchObject({ code: 'SESSION_REVOKED' })
    expect((await withKey(apiKey)).statusCode).toBe(401)
    const login = await target.c.login(target.email)
    expect(login.statusCode).toBe(403)
    expect(login.json()).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'USER_DISABLED' })
    // A wrong password learns nothing about the account.
    expect((await target.c.login(target.email, 'not the password at all')).json()).toMatchObject({ code: 'INVALID_CREDENTIALS' })

    // Again: nothing to do, no second audit entry.
    expect((await post(ops, `/admin/api/users/${target.id}/disable`)).json()).toMatchObject({ outcome: 'already_done' })
    expect(await auditRows(ctx.app, 'admin.user_disabled', target.id)).toHaveLength(1)
    expect((await get(ops, '/admin/api/users?disabled=true')).json().items.map((u: { id: string }) => u.id)).toEqual([target.id])
  })

  it('enable lets the user log in again; API keys made before the disable stay void', async () => {
    const res = await post(ops, `/admin/api/users/${target.id}/enable`)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ id: target.id, disabledAt: null, outcome: 'done' })
    expect((await auditRows(ctx.app, 'admin.user_enabled', target.id))[0]).toMatchObject({ actorUserId: ops.id, userAgent: UA })
    expect((await target.c.login(target.email)).statusCode).toBe(200)
    expect((await target.c.get('/me')).statusCode).toBe(200)
    expect((await withKey(apiKey)).statusCode).toBe(401)
    expect((await post(ops, `/admin/api/users/${target.id}/enable`)).json()).toMatchObject({ outcome: 'already_done' })
  })

  it('refuses disabling oneself (409), unknown users (404) and malformed ids (400)', async () => {
    const self = await post(ops, `/admin/api/users/${ops.id}/disable`)
    expect(self.statusCode).toBe(409)
    expect(self.json()).toMatchObject({ statusCode: 409, code: 'CANNOT_DISABLE_SELF' })
    const missing = await post(ops, '/admin/api/users/00000000-0000-4000-8000-000000000000/disable')
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'USER_NOT_FOUND' })
    expect((await post(ops, '/admin/api/users/00000000-0000-4000-8000-000000000000/enable')).statusCode).toBe(404)
    expect((await post(ops, '/admin/api/users/nope/disable')).statusCode).toBe(400)
  })
})

describe('POST /admin/api/users/:id/revoke-sessions', () => {
  it('ends every session of the user now, without disabling them: API keys keep working, login works', async () => {
    const key = (await ctx.app.apiKeys.create({ tenantId: tenant.id, createdBy: target.id, name: 'after-enable', role: 'viewer' })).secret
    // Two browsers of the same person: both end.
    const second = createClient(ctx.app)
    expect((await second.login(target.email)).statusCode).toBe(200)
    expect((await target.c.get('/me')).statusCode).toBe(200)
    expect((await second.get('/me')).statusCode).toBe(200)

    const res = await post(ops, `/admin/api/users/${target.id}/revoke-sessions`)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ id: target.id, sessionsRevokedAt: expect.any(String) })
    const [entry] = await auditRows(ctx.app, 'admin.user_sessions_revoked', target.id)
    expect(entry).toMatchObject({ actorUserId: ops.id, targetType: 'user', userAgent: UA, ip: expect.stringMatching(/^10\./), metadata: { email: target.email } })

    for (const c of [target.c, second]) {
      const me = await c.get('/me')
      expect(me.statusCode).toBe(401)
      expect(me.json()).toMatchObject({ code: 'SESSION_REVOKED' })
    }
    expect((await withKey(key)).statusCode).toBe(200)
    const detail = (await get(ops, `/admin/api/users/${target.id}`)).json()
    expect(detail).toMatchObject({ disabledAt: null, sessionsRevokedAt: res.json().sessionsRevokedAt })
    expect((await target.c.login(target.email)).statusCode).toBe(200)
    expect((await target.c.get('/me')).statusCode).toBe(200)
    // The admin's own session is untouched.
    expect((await get(ops, '/admin/api/users?limit=1')).statusCode).toBe(200)
  })

  it('404 USER_NOT_FOUND for an unknown user (no audit entry), 400 for a malformed id', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000'
    const missing = await post(ops, `/admin/api/users/${unknown}/revoke-sessions`)
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ statusCode: 404, code: 'USER_NOT_FOUND' })
    expect(await auditRows(ctx.app, 'admin.user_sessions_revoked', unknown)).toHaveLength(0)
    const bad = await post(ops, '/admin/api/users/nope/revoke-sessions')
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ statusCode: 400, code: expect.any(String) })
  })
})
