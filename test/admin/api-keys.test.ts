/**
 * Platform API keys (tka_…): created, listed and revoked by platform admins on /admin/api/api-keys, usable as
 * `Authorization: Bearer` on every /admin/api route (no CSRF), every use audited with the key as actor; never
 * a tenant key on /admin/api nor an admin key on /api; revoked key or revoked admin → stops at once.
 */
import { eq } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { users } from '../../drizzle/host/schema.js'
import { newMember, type Member } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { auditRows, platformAdmin, ua } from './helpers.js'

const ctx = useApp()
let ops: Member
let plain: Member
let tenant: { id: string; slug: string }
let tenantKey: string

beforeAll(async () => {
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  tenant = await ctx.app.services.provisioner.provision({ slug: 'keys-co', name: 'Keys Co', ownerUserId: plain.id })
  tenantKey = (await ctx.app.apiKeys.create({ tenantId: tenant.id, createdBy: plain.id, name: 'ci', role: 'admin' })).secret
})

const bearer = (key: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
  ctx.app.inject({ method, url, headers: { authorization: `Bearer ${key}`, ...ua }, ...(payload ? { payload } : {}) })

async function createKey(by: Member = ops, name = 'ops script') {
  const res = await by.c.post('/admin/api/api-keys', { name }, ua)
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as { id: string; secret: string; prefix: string }
}

describe('POST/GET/DELETE /admin/api/api-keys', () => {
  it('creates a key shown once, lists it without the secret, audits the creation', async () => {
    const created = await createKey()
    expect(created.secret).toMatch(/^tka_test_[A-Za-z0-9_-]{43}$/)
    expect(created.secret.startsWith(created.prefix)).toBe(true)
    const list = (await ops.c.get('/admin/api/api-keys', ua)).json()
    const listed = list.items.find((k: { id: string }) => k.id === created.id)
    expect(listed).toMatchObject({ id: created.id, name: 'ops script', createdBy: ops.id, revokedAt: null })
    expect(JSON.stringify(list)).not.toContain(created.secret)
    const [row] = await auditRows(ctx.app, 'admin.api_key_created', created.id)
    expect(row).toMatchObject({ actorUserId: ops.id, targetType: 'admin_api_key', userAgent: ua['user-agent'] })
  })

  it('works as Bearer on other /admin/api routes, writes included (no CSRF), each use audited with the key as actor', async () => {
    const { id, secret } = await createKey()
    const res = await bearer(secret, 'GET', `/admin/api/users/${plain.id}`)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ id: plain.id })
    const uses = await auditRows(ctx.app, 'admin.api_key_used', id)
    expect(uses).toHaveLength(1)
    expect(uses[0]).toMatchObject({ actorUserId: ops.id, actorApiKeyId: id, metadata: { method: 'GET', route: '/admin/api/users/:id' } })
    // A write with no session and no CSRF token: the row it audits names the key.
    const victim = await newMember(ctx.app, 'victim')
    const disabled = await bearer(secret, 'POST', `/admin/api/users/${victim.id}/disable`)
    expect(disabled.statusCode, disabled.body).toBe(200)
    const [row] = await auditRows(ctx.app, 'admin.user_disabled', victim.id)
    expect(row).toMatchObject({ actorUserId: ops.id, actorApiKeyId: id })
    expect((await bearer(secret, 'GET', `/admin/api/audit-logs?actorApiKeyId=${id}`)).json().items.length).toBeGreaterThanOrEqual(3)
  })

  it('a key cannot mint keys (403 API_KEY_NOT_ALLOWED), but can list', async () => {
    const { secret } = await createKey()
    const res = await bearer(secret, 'POST', '/admin/api/api-keys', { name: 'successor' })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ code: 'API_KEY_NOT_ALLOWED' })
    expect((await bearer(secret, 'GET', '/admin/api/api-keys')).statusCode).toBe(200)
  })

  it('refuses anonymous (401) and non-admins (403), also when they hold a session', async () => {
    expect((await ctx.app.inject({ method: 'GET', url: '/admin/api/api-keys' })).statusCode).toBe(401)
    for (const [method, url] of [
      ['GET', '/admin/api/api-keys'],
      ['POST', '/admin/api/api-keys'],
      ['DELETE', '/admin/api/api-keys/00000000-0000-4000-8000-000000000000'],
    ] as const) {
      const res = await plain.c.request({ method, url, ...(method === 'POST' ? { payload: { name: 'x' } } : {}) })
      expect(res.statusCode, `${method} ${url}`).toBe(403)
      expect(res.json()).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' })
    }
  })

  it('refuses bad input with a 4xx', async () => {
    for (const body of [{}, { name: '' }, { name: 'x', expiresInDays: 0 }, { name: 'x', other: 1 }, { name: 'a\nb' }]) {
      const res = await ops.c.post('/admin/api/api-keys', body, ua)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
    }
    expect((await ops.c.delete('/admin/api/api-keys/nope', ua)).statusCode).toBe(400)
    expect((await ops.c.get('/admin/api/api-keys?limit=0', ua)).statusCode).toBe(400)
    const missing = await ops.c.delete('/admin/api/api-keys/00000000-0000-4000-8000-000000000000', ua)
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'ADMIN_API_KEY_NOT_FOUND' })
    for (const header of ['Bearer tka_test_short', 'Basic abc', `Bearer tka_live_${'a'.repeat(43)}`, `Bearer tka_test_${'a'.repeat(43)}`]) {
      const res = await ctx.app.inject({ method: 'GET', url: '/admin/api/users', headers: { authorization: header } })
      expect(res.statusCode, header).toBe(401)
      expect(res.json()).toMatchObject({ code: 'INVALID_API_KEY' })
    }
  })
})

describe('every /admin/api route', () => {
  it('takes a platform key (documented: session or adminApiKey) and refuses a tenant key', async () => {
    const spec = (await ctx.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, { security?: unknown }>> }
    const ops = Object.entries(spec.paths)
      .filter(([path]) => path.startsWith('/admin/api/'))
      .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method, path, op })))
    expect(ops.length).toBeGreaterThan(15)
    for (const { method, path, op } of ops) expect(op.security, `${method} ${path}`).toEqual([{ session: [] }, { adminApiKey: [] }])
    // The guard, not only the document: one read per route file with a tenant key and with a platform key.
    const { secret } = await createKey()
    for (const path of ['/admin/api/tenants', '/admin/api/users', '/admin/api/audit-logs', '/admin/api/api-keys']) {
      expect((await bearer(tenantKey, 'GET', path)).statusCode, path).toBe(401)
      expect((await bearer(secret, 'GET', path)).statusCode, path).toBe(200)
    }
  })

  it('every documented operation: anonymous 401, a tenant key 401, a signed-in non-admin 403, before its input is read', async () => {
    const spec = (await ctx.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, unknown>> }
    const ops = Object.entries(spec.paths)
      .filter(([path]) => path.startsWith('/admin/api/'))
      .flatMap(([path, item]) => Object.keys(item).map((method) => ({ method: method.toUpperCase() as 'GET', url: path.replace(/\{[^}]+\}/g, crypto.randomUUID()) })))
    expect(ops.length).toBeGreaterThan(15)
    for (const { method, url } of ops) {
      // No body at all: the guard answers before validation would (a 400 would tell an outsider about the route).
      const anon = await ctx.app.inject({ method, url })
      expect(anon.statusCode, `${method} ${url}`).toBe(401)
      expect(anon.json(), `${method} ${url}`).toMatchObject({ code: 'UNAUTHENTICATED' })
      const keyed = await ctx.app.inject({ method, url, headers: { authorization: `Bearer ${tenantKey}` } })
      expect(keyed.statusCode, `${method} ${url}`).toBe(401)
      expect(keyed.json(), `${method} ${url}`).toMatchObject({ code: 'INVALID_API_KEY' })
      const denied = await plain.c.request({ method, url, headers: ua })
      expect(denied.statusCode, `${method} ${url}`).toBe(403)
      expect(denied.json(), `${method} ${url}`).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' })
    }
  })
})

describe('cross-type refusal', () => {
  it('a tenant key never works on /admin/api, even one made by a platform admin', async () => {
    const adminsTenantKey = (await ctx.app.apiKeys.create({ tenantId: tenant.id, createdBy: ops.id, name: 'x', role: 'admin' })).secret
    for (const key of [tenantKey, adminsTenantKey]) {
      const res = await bearer(key, 'GET', '/admin/api/users')
      expect(res.statusCode).toBe(401)
      expect(res.json()).toMatchObject({ code: 'INVALID_API_KEY' })
    }
    // …and it still works where it belongs.
    const own = await ctx.app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${tenantKey}`, 'x-tenant-id': tenant.slug } })
    expect(own.statusCode, own.body).toBe(200)
  })

  it('an admin key never acts as a tenant key on /api, nor as a session elsewhere', async () => {
    const { secret } = await createKey()
    const res = await ctx.app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${secret}`, 'x-tenant-id': tenant.slug } })
    expect(res.statusCode).toBe(401)
    expect(res.json()).toMatchObject({ code: 'INVALID_API_KEY' })
    const me = await ctx.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${secret}` } })
    expect(me.statusCode).toBe(401)
    // Bull Board stays session-only.
    const board = await ctx.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { authorization: `Bearer ${secret}` } })
    expect(board.statusCode).toBe(401)
  })
})

describe('revocation', () => {
  it('a revoked key stops at once; revoking is audited once', async () => {
    const { id, secret } = await createKey()
    expect((await bearer(secret, 'GET', '/admin/api/users')).statusCode).toBe(200)
    expect((await ops.c.delete(`/admin/api/api-keys/${id}`, ua)).statusCode).toBe(204)
    const res = await bearer(secret, 'GET', '/admin/api/users')
    expect(res.statusCode).toBe(401)
    expect(res.json()).toMatchObject({ code: 'INVALID_API_KEY' })
    expect((await ops.c.delete(`/admin/api/api-keys/${id}`, ua)).statusCode).toBe(204)
    expect(await auditRows(ctx.app, 'admin.api_key_revoked', id)).toHaveLength(1)
    const listed = (await ops.c.get('/admin/api/api-keys', ua)).json().items.find((k: { id: string }) => k.id === id)
    expect(listed.revokedAt).not.toBeNull()
  })

  it('a key stops at once when its creator is no platform admin any more, and works again if re-granted', async () => {
    const other = await platformAdmin(ctx.app, 'ops2')
    const { secret } = await createKey(other)
    expect((await bearer(secret, 'GET', '/admin/api/users')).statusCode).toBe(200)
    await ctx.app.host.db.update(users).set({ isPlatformAdmin: false }).where(eq(users.id, other.id))
    const res = await bearer(secret, 'GET', '/admin/api/users')
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' })
  })

  it('a key stops when its creator is disabled', async () => {
    const other = await platformAdmin(ctx.app, 'ops3')
    const { secret } = await createKey(other)
    expect((await ops.c.post(`/admin/api/users/${other.id}/disable`, undefined, ua)).statusCode).toBe(200)
    expect((await bearer(secret, 'GET', '/admin/api/users')).statusCode).toBe(401)
  })
})
