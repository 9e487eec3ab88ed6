/**
 * API keys over HTTP: create / list / revoke by tenant admins (secret shown once, only its SHA-256
 * stored, audited), using a key on /api (its own tenant only, as its creator, capped by the key's
 * role and by the creator's current role), every way a key stops working (revoked, expired, creator
 * removed, malformed, wrong deployment), tenant status rules, non-/api routes refusing keys, cookies
 * ignored beside a key, revocation reaching another process at once, and last_used_at throttling.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { uuidv7 } from 'uuidv7'
import { describe, expect, it } from 'vitest'
import { createApiKeys } from '../../src/core/identity/api-keys.js'
import { buildApp } from '../helpers/build-app.js'
import { newRedisClient } from '../../src/core/lib/redis.js'
import { joinTenant } from '../helpers/members.js'
import { type Member, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const SUFFIX = 'keys.test'

const ctx = useApp({ TENANT_DOMAIN_SUFFIX: SUFFIX })

const tag = () => randomBytes(3).toString('hex')
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')
const SECRET = /^tk_test_[A-Za-z0-9_-]{43}$/

/**
 * A tenant with an owner, an admin, an editor and a viewer (joined by invitation) and one project. Verified:
 * creating API keys needs a verified address (test/auth/account-flows.test.ts covers the refusal). They log
 * in once they belong to it: a login with no membership would provision a personal tenant.
 */
async function team(label = 'keys') {
  const slug = `${label}-${tag()}`
  const t = await tenantWith(ctx.app, { slug, labels: { owner: `${label}-owner` }, verified: true, project: `${slug} project` })
  const api = (a: Member, method: InjectOptions['method'], path: string, body?: unknown) => t.as(a).request(method, path, body)
  return { ...t, api, projectId: t.projectId! }
}
type Team = Awaited<ReturnType<typeof team>>

/** Create a key through the API as `who` (a session), expecting 201. */
async function createKey(t: Team, who: Member, body: { name?: string; role: string; expiresInDays?: number }) {
  const res = await t.api(who, 'POST', '/api-keys', { name: `key ${tag()}`, ...body })
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as { id: string; secret: string; prefix: string; role: string; expiresAt: string | null }
}

/** A request carrying only the key (no cookie), from its own address. */
function withKey(
  secret: string,
  method: InjectOptions['method'],
  url: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
) {
  return ctx.app.inject({
    method,
    url,
    remoteAddress: `10.99.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`,
    headers: { authorization: `Bearer ${secret}`, ...opts.headers },
    ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
  })
}

const expectError = (res: LightMyRequestResponse, status: number, code: string) => {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json()).toMatchObject({ statusCode: status, code, error: expect.any(String), message: expect.any(String) })
}

const auditRows = (keyId: string) =>
  ctx.app.host.sql<{ action: string; actor_user_id: string; tenant_id: string; ip: string | null; metadata: Record<string, unknown> }[]>`
    select action, actor_user_id, tenant_id, ip, metadata from sys_audit_logs where target_type = 'api_key' and target_id = ${keyId} order by created_at`

describe('managing keys', () => {
  it('creates a key whose secret is shown once and stored only as its SHA-256, lists and revokes it, audited', async () => {
    const t = await team()
    const res = await t.api(t.admin, 'POST', '/api-keys', { name: 'ci deploys', role: 'editor' })
    expect(res.statusCode, res.body).toBe(201)
    const created = res.json()
    expect(created.secret).toMatch(SECRET)
    expect(created).toMatchObject({
      id: expect.any(String),
      name: 'ci deploys',
      role: 'editor',
      prefix: created.secret.slice(0, 16),
      createdBy: t.admin.id,
      lastUsedAt: null,
      expiresAt: null,
      revokedAt: null,
    })

    // Only the hash is stored: no column holds the secret (nor its random part).
    const [row] = await ctx.app.host.sql`select * from core_api_keys where id = ${created.id}`
    expect(row!.key_hash).toBe(sha256(created.secret))
    const stored = JSON.stringify(row)
    expect(stored).not.toContain(created.secret)
    expect(stored).not.toContain(created.secret.slice(16))

    // Lists never show the secret or the hash.
    const list = await t.api(t.owner, 'GET', '/api-keys')
    expect(list.statusCode).toBe(200)
    expect(list.json().items).toEqual([{ ...created, secret: undefined }].map(({ secret: _, ...k }) => k))
    expect(list.body).not.toContain(created.secret.slice(16))
    expect(list.body).not.toContain(row!.key_hash)

    // The key works, until revoked.
    expect((await withKey(created.secret, 'GET', '/api/projects')).statusCode).toBe(200)
    expect((await t.api(t.admin, 'DELETE', `/api-keys/${created.id}`)).statusCode).toBe(204)
    expectError(await withKey(created.secret, 'GET', '/api/projects'), 401, 'INVALID_API_KEY')
    const after = (await t.api(t.admin, 'GET', '/api-keys')).json().items[0]
    expect(after).toMatchObject({ id: created.id, revokedAt: expect.any(String), lastUsedAt: expect.any(String) })
    // Revoking again changes nothing; a key that isn't this tenant's is unknown.
    expect((await t.api(t.admin, 'DELETE', `/api-keys/${created.id}`)).statusCode).toBe(204)
    expectError(await t.api(t.admin, 'DELETE', `/api-keys/${uuidv7()}`), 404, 'API_KEY_NOT_FOUND')
    const other = await team('other')
    const foreign = await createKey(other, other.owner, { role: 'viewer' })
    expectError(await t.api(t.admin, 'DELETE', `/api-keys/${foreign.id}`), 404, 'API_KEY_NOT_FOUND')
    expect((await withKey(foreign.secret, 'GET', '/api/tenant')).statusCode).toBe(200)

    // Audited once each, with who, where from, and never the secret.
    const audits = await auditRows(created.id)
    expect(audits.map((a) => a.action)).toEqual(['api_key.created', 'api_key.revoked'])
    for (const a of audits) {
      expect(a).toMatchObject({ actor_user_id: t.admin.id, tenant_id: t.id, ip: expect.any(String) })
      expect(JSON.stringify(a)).not.toContain(created.secret.slice(16))
    }
    expect(audits[0]!.metadata).toMatchObject({ name: 'ci deploys', role: 'editor', prefix: created.prefix })
  })

  it('sets an expiry from expiresInDays, pages the list newest first, and validates input', async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'viewer', expiresInDays: 30 })
    const days = (Date.parse(k.expiresAt!) - Date.now()) / 86_400_000
    expect(days).toBeGreaterThan(29.9)
    expect(days).toBeLessThan(30.1)
    const ids = [k.id]
    for (let i = 0; i < 4; i++) ids.push((await createKey(t, t.admin, { role: 'viewer' })).id)
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page: LightMyRequestResponse = await t.api(t.admin, 'GET', `/api-keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(page.statusCode).toBe(200)
      seen.push(...page.json().items.map((i: { id: string }) => i.id))
      cursor = page.json().nextCursor
    } while (cursor)
    expect(seen).toEqual([...ids].reverse())

    for (const body of [
      { name: '', role: 'viewer' },
      { name: 'x', role: 'owner' },
      { name: 'x', role: 'viewer', expiresInDays: 0 },
      { name: 'x', role: 'viewer', expiresInDays: 1.5 },
      { name: 'x', role: 'viewer', extra: true },
      { role: 'viewer' },
    ]) {
      expectError(await t.api(t.admin, 'POST', '/api-keys', body), 400, 'VALIDATION_ERROR')
    }
  })

  it('admins manage keys; a key cannot exceed its creator role; an API key cannot manage keys', async () => {
    const t = await team()
    for (const who of [t.editor, t.viewer]) {
      expectError(await t.api(who, 'POST', '/api-keys', { name: 'x', role: 'viewer' }), 403, 'INSUFFICIENT_ROLE')
      expectError(await t.api(who, 'GET', '/api-keys'), 403, 'INSUFFICIENT_ROLE')
    }
    // A grant lets an editor manage keys, up to their own role.
    const grant = await t.api(t.owner, 'PUT', `/members/${t.editor.id}/permissions`, {
      resource: 'api_keys',
      action: 'manage',
      granted: true,
    })
    expect(grant.statusCode, grant.body).toBe(200)
    expectError(await t.api(t.editor, 'POST', '/api-keys', { name: 'x', role: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    const editorKey = await createKey(t, t.editor, { role: 'editor' })
    expect(editorKey.role).toBe('editor')

    const adminKey = await createKey(t, t.owner, { role: 'admin' })
    expectError(await withKey(adminKey.secret, 'GET', '/api/api-keys'), 403, 'API_KEY_NOT_ALLOWED')
    expectError(
      await withKey(adminKey.secret, 'POST', '/api/api-keys', { body: { name: 'spawn', role: 'admin' } }),
      403,
      'API_KEY_NOT_ALLOWED',
    )
    expectError(await withKey(adminKey.secret, 'DELETE', `/api/api-keys/${editorKey.id}`), 403, 'API_KEY_NOT_ALLOWED')
    expect((await withKey(editorKey.secret, 'GET', '/api/tenant')).statusCode).toBe(200)
  })
})

describe('using a key', () => {
  it('reads and writes its own tenant as its creator, without naming the tenant or a CSRF token', async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'editor' })
    const list = await withKey(k.secret, 'GET', '/api/projects')
    expect(list.statusCode, list.body).toBe(200)
    expect(list.json().items.map((p: { id: string }) => p.id)).toEqual([t.projectId])
    const created = await withKey(k.secret, 'POST', '/api/projects', { body: { name: 'made by a key' } })
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json()).toMatchObject({ name: 'made by a key', createdBy: t.admin.id })
    expect((await withKey(k.secret, 'GET', `/api/projects/${created.json().id}`)).json()).toMatchObject({ name: 'made by a key' })
    expect((await withKey(k.secret, 'GET', '/api/tenant')).json()).toEqual({
      tenant: expect.objectContaining({ id: t.id, slug: t.slug }),
      role: 'editor',
      membershipRole: 'member',
    })
    // Naming its own tenant, every way, is fine.
    for (const [url, headers] of [
      ['/api/tenant', { 'x-tenant-id': t.slug }],
      ['/api/tenant', { 'x-tenant-id': t.id }],
      [`/t/${t.slug}/api/tenant`, {}],
      [`/t/${t.id}/api/tenant`, {}],
      ['/api/tenant', { host: `${t.slug}.${SUFFIX}` }],
    ] as const) {
      const res = await withKey(k.secret, 'GET', url, { headers })
      expect(res.statusCode, `${url} ${JSON.stringify(headers)}`).toBe(200)
      expect(res.json().tenant.id).toBe(t.id)
    }
    // The bearer scheme is case-insensitive (RFC 7235).
    expect((await ctx.app.inject({ method: 'GET', url: '/api/tenant', headers: { authorization: `bearer ${k.secret}` } })).statusCode).toBe(200)
  })

  it("caps the key's role: viewer keys read only, editor keys can't delete, admin keys can", async () => {
    const t = await team()
    const viewer = await createKey(t, t.owner, { role: 'viewer' })
    const editor = await createKey(t, t.owner, { role: 'editor' })
    const admin = await createKey(t, t.owner, { role: 'admin' })
    expect((await withKey(viewer.secret, 'GET', '/api/projects')).statusCode).toBe(200)
    expectError(await withKey(viewer.secret, 'POST', '/api/projects', { body: { name: 'no' } }), 403, 'INSUFFICIENT_ROLE')
    expectError(await withKey(viewer.secret, 'PATCH', `/api/projects/${t.projectId}`, { body: { name: 'no' } }), 403, 'INSUFFICIENT_ROLE')
    expectError(await withKey(editor.secret, 'DELETE', `/api/projects/${t.projectId}`), 403, 'INSUFFICIENT_ROLE')
    // Managing people is for people: any key, whatever its role (config.sessionOnly).
    expectError(
      await withKey(viewer.secret, 'POST', '/api/members', { body: { email: t.viewer.email, role: 'member' } }),
      403,
      'API_KEY_NOT_ALLOWED',
    )
    expect((await withKey(editor.secret, 'PATCH', `/api/projects/${t.projectId}`, { body: { name: 'renamed' } })).statusCode).toBe(200)
    // A key acting for its creator can't make the creator leave the tenant (leaving is a session action).
    const creatorKey = await createKey(t, t.admin, { role: 'viewer' })
    expectError(await withKey(creatorKey.secret, 'DELETE', `/api/members/${t.admin.id}`), 403, 'API_KEY_NOT_ALLOWED')
    expect((await withKey(creatorKey.secret, 'GET', '/api/projects')).statusCode).toBe(200)
    // Even the owner's admin key is not an owner: ownership is handed over from a session only.
    expect((await withKey(admin.secret, 'GET', '/api/tenant')).json()).toMatchObject({ role: 'admin', membershipRole: 'admin' })
    expectError(await withKey(admin.secret, 'PATCH', `/api/members/${t.admin.id}`, { body: { role: 'owner' } }), 403, 'API_KEY_NOT_ALLOWED')
    expect((await withKey(admin.secret, 'DELETE', `/api/projects/${t.projectId}`)).statusCode).toBe(204)
  })

  it("follows the creator's current role: demotion lowers the key, a grant never lifts it, a denial applies", async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'admin' })
    expect((await withKey(k.secret, 'GET', '/api/tenant')).json()).toMatchObject({ role: 'admin' })
    const demote = await t.api(t.owner, 'PATCH', `/members/${t.admin.id}`, { role: 'member', localRole: 'viewer' })
    expect(demote.statusCode, demote.body).toBe(200)
    expect((await withKey(k.secret, 'GET', '/api/tenant')).json()).toMatchObject({ role: 'viewer', membershipRole: 'member' })
    expectError(await withKey(k.secret, 'POST', '/api/projects', { body: { name: 'no' } }), 403, 'INSUFFICIENT_ROLE')
    // The creator's grant to edit projects lets the creator (session) write, not the key.
    await t.api(t.owner, 'PUT', `/members/${t.admin.id}/permissions`, { resource: 'projects', action: 'edit', granted: true })
    expect((await t.api(t.admin, 'POST', '/projects', { name: 'by grant' })).statusCode).toBe(201)
    expectError(await withKey(k.secret, 'POST', '/api/projects', { body: { name: 'no' } }), 403, 'INSUFFICIENT_ROLE')
    // Promoted back: the key is admin again.
    expect((await t.api(t.owner, 'PATCH', `/members/${t.admin.id}`, { role: 'admin' })).statusCode).toBe(200)
    expect((await withKey(k.secret, 'POST', '/api/projects', { body: { name: 'yes' } })).statusCode).toBe(201)
    // A denial of the creator binds the key too.
    const deny = await t.api(t.owner, 'PUT', `/members/${t.admin.id}/permissions`, { resource: 'projects', action: 'view', granted: false })
    expect(deny.statusCode, deny.body).toBe(200)
    expectError(await withKey(k.secret, 'GET', '/api/projects'), 403, 'INSUFFICIENT_ROLE')
    expect((await withKey(k.secret, 'GET', '/api/tenant')).statusCode).toBe(200)
  })

  it('stops working when its creator is removed from the tenant (401 INVALID_API_KEY), for good: re-adding revives nothing', async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'editor' })
    expect((await withKey(k.secret, 'GET', '/api/projects')).statusCode).toBe(200)
    expect((await t.api(t.owner, 'DELETE', `/members/${t.admin.id}`)).statusCode).toBe(204)
    for (const url of ['/api/projects', '/api/tenant', `/t/${t.slug}/api/projects`]) {
      const res = await withKey(k.secret, 'GET', url)
      expectError(res, 401, 'INVALID_API_KEY')
      expect(res.body).not.toContain(t.slug)
    }
    await joinTenant(ctx.app, t.id, t.admin, 'member', 'viewer')
    expect((await t.api(t.admin, 'GET', '/tenant')).statusCode).toBe(200)
    expectError(await withKey(k.secret, 'GET', '/api/tenant'), 401, 'INVALID_API_KEY')
  })
})

describe('keys that do not work', () => {
  it('revoked, expired, unknown, malformed or another deployment’s keys → 401 INVALID_API_KEY', async () => {
    const t = await team()
    const live = await createKey(t, t.admin, { role: 'viewer' })
    const expired = await createKey(t, t.admin, { role: 'viewer', expiresInDays: 1 })
    await ctx.app.host.sql`update core_api_keys set expires_at = now() - interval '1 second' where id = ${expired.id}`
    const flipped = live.secret.slice(0, -1) + (live.secret.endsWith('A') ? 'B' : 'A')
    const random = `tk_test_${randomBytes(32).toString('base64url')}`
    for (const authorization of [
      `Bearer ${expired.secret}`,
      `Bearer ${flipped}`,
      `Bearer ${random}`,
      `Bearer ${live.secret.replace('tk_test_', 'tk_live_')}`,
      `Bearer ${live.secret.slice(0, -1)}`,
      `Bearer ${live.secret}x`,
      `Bearer ${live.secret} extra`,
      `Basic ${Buffer.from(`x:${live.secret}`).toString('base64')}`,
      `Token ${live.secret}`,
      live.secret,
      'Bearer',
      'Bearer ',
      '',
    ]) {
      for (const method of ['GET', 'POST'] as const) {
        const res = await ctx.app.inject({
          method,
          url: '/api/projects',
          headers: { authorization },
          ...(method === 'POST' ? { payload: { name: 'x' } } : {}),
        })
        expectError(res, 401, 'INVALID_API_KEY')
      }
    }
    expect((await withKey(live.secret, 'GET', '/api/projects')).statusCode).toBe(200)
    // An unknown key beside a perfectly good session cookie is still refused: the cookie is ignored.
    const res = await t.admin.c.request({
      method: 'GET',
      url: '/api/projects',
      headers: { 'x-tenant-id': t.slug, authorization: `Bearer ${random}` },
    })
    expectError(res, 401, 'INVALID_API_KEY')
  })

  it('a key never reaches another tenant: naming one is 404 TENANT_NOT_FOUND with nothing of it in the body', async () => {
    const a = await team('alpha')
    const b = await team('beta')
    const k = await createKey(a, a.owner, { role: 'admin' })
    for (const [method, url, headers] of [
      ['GET', '/api/projects', { 'x-tenant-id': b.slug }],
      ['POST', '/api/projects', { 'x-tenant-id': b.id }],
      ['GET', `/t/${b.slug}/api/projects`, {}],
      ['POST', `/t/${b.id}/api/projects`, {}],
      ['GET', '/api/projects', { host: `${b.slug}.${SUFFIX}` }],
      ['GET', `/api/projects/${b.projectId}`, { 'x-tenant-id': b.slug }],
      ['DELETE', `/api/projects/${b.projectId}`, { 'x-tenant-id': b.slug }],
      ['GET', `/t/${b.slug}/api/members`, {}],
      ['GET', '/api/tenant', { 'x-tenant-id': `ghost-${tag()}` }],
    ] as const) {
      {
        const res = await withKey(k.secret, method, url, { headers, ...(method === 'POST' ? { body: { name: 'into B?' } } : {}) })
        expectError(res, 404, 'TENANT_NOT_FOUND')
        for (const marker of [b.id, b.slug, b.projectId, a.slug, a.id]) expect(res.body).not.toContain(marker)
      }
    }
    // Header (own tenant) and path (other tenant) disagree: refused as for sessions, never silently one of them.
    expectError(await withKey(k.secret, 'GET', `/t/${b.slug}/api/tenant`, { headers: { 'x-tenant-id': a.slug } }), 400, 'TENANT_CONFLICT')
    // A project id of B through A is just an unknown project.
    expectError(await withKey(k.secret, 'GET', `/api/projects/${b.projectId}`), 404, 'PROJECT_NOT_FOUND')

    // Beside B's owner's session (active tenant B), the key still speaks for A only.
    const both = b.owner.c
    expect((await both.put('/me/active-tenant', { tenant: b.slug })).statusCode).toBe(200)
    const mine = await both.request({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${k.secret}` } })
    expect(mine.statusCode).toBe(200)
    expect(mine.json().items.map((p: { id: string }) => p.id)).toEqual([a.projectId])
    const named = await both.request({
      method: 'GET',
      url: '/api/projects',
      headers: { authorization: `Bearer ${k.secret}`, 'x-tenant-id': b.slug },
    })
    expectError(named, 404, 'TENANT_NOT_FOUND')
    // …and writes as A's owner, to A, with no CSRF token although a session cookie rides along.
    const write = await both.request({
      method: 'POST',
      url: '/api/projects',
      headers: { authorization: `Bearer ${k.secret}`, 'x-csrf-token': '' },
      payload: { name: 'cookie ignored' },
    })
    expect(write.statusCode, write.body).toBe(201)
    expect(write.json().createdBy).toBe(a.owner.id)
    expect((await b.api(b.owner, 'GET', '/projects')).json().items.map((p: { name: string }) => p.name)).not.toContain('cookie ignored')
  })

  it('tenant status applies: suspended 403, not ready 409, deleted 404', async () => {
    const s = await team('susp')
    const p = await team('prov')
    const d = await team('dele')
    const [ks, kp, kd] = await Promise.all([s, p, d].map((t) => createKey(t, t.owner, { role: 'admin' })))
    await ctx.app.tenancy.provisioner.run('suspended', s.id)
    await ctx.app.tenancy.provisioner.writes.update(p.id, { status: 'provisioning', provisionStep: 'migrate' })
    await ctx.app.tenancy.provisioner.run('softDeleted', d.id)
    expectError(await withKey(ks!.secret, 'GET', '/api/projects'), 403, 'TENANT_SUSPENDED')
    expectError(await withKey(ks!.secret, 'POST', '/api/projects', { body: { name: 'x' } }), 403, 'TENANT_SUSPENDED')
    expectError(await withKey(kp!.secret, 'GET', '/api/projects'), 409, 'TENANT_NOT_READY')
    expectError(await withKey(kd!.secret, 'GET', '/api/projects'), 404, 'TENANT_NOT_FOUND')
    await ctx.app.tenancy.provisioner.run('resumed', s.id)
    expect((await withKey(ks!.secret, 'GET', '/api/projects')).statusCode).toBe(200)
  })

  it('routes outside /api refuse keys (401 SESSION_REQUIRED), also beside a valid session cookie', async () => {
    const t = await team()
    const k = await createKey(t, t.owner, { role: 'admin' })
    const bearer = { authorization: `Bearer ${k.secret}` }
    for (const [method, url, payload] of [
      ['GET', '/me', undefined],
      ['PUT', '/me/active-tenant', { tenant: t.slug }],
      ['GET', '/tenants', undefined],
      ['POST', '/tenants', { name: 'by key', slug: `bykey-${tag()}` }],
      ['POST', '/auth/logout', undefined],
    ] as const) {
      expectError(await ctx.app.inject({ method, url, headers: bearer, ...(payload ? { payload } : {}) }), 401, 'SESSION_REQUIRED')
      const withCookie = await t.owner.c.request({ method, url, headers: bearer, ...(payload ? { payload } : {}) })
      expectError(withCookie, 401, 'SESSION_REQUIRED')
    }
    // The session itself is untouched (logout above was refused).
    expect((await t.owner.c.get('/me')).statusCode).toBe(200)
  })
})

describe('across processes and over time', () => {
  it('a revocation in one process stops the key in another that had it cached', async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'viewer' })
    const other = await buildApp(ctx.env.config)
    try {
      const use = () => other.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${k.secret}` } })
      expect((await use()).statusCode).toBe(200) // now cached in `other`
      expect((await t.api(t.admin, 'DELETE', `/api-keys/${k.id}`)).statusCode).toBe(204)
      // Pub/sub delivery is asynchronous: wait for it (well under the 30 s TTL that would also end it).
      let status = 200
      await waitFor(async () => {
        status = (await use()).statusCode
        return status !== 200
      }).catch(() => {}) // on timeout, the expect below reports what was seen
      expect(status).toBe(401)
      expect((await use()).json()).toMatchObject({ code: 'INVALID_API_KEY' })
    } finally {
      await other.close()
    }
  })

  it('writes last_used_at at most once per interval', async () => {
    const t = await team()
    const k = await createKey(t, t.admin, { role: 'viewer' })
    const redis = newRedisClient(ctx.env.config)
    const keys = createApiKeys({
      db: ctx.app.host.db,
      redis,
      channel: `${ctx.env.config.redisPrefix}:api-keys-touch`,
      env: 'test',
      touchEveryMs: 1000,
    })
    try {
      await keys.ready
      // Microseconds since the epoch, as text (exact comparison), or null.
      const lastUsed = async () =>
        (
          await ctx.app.host.sql<{ t: string | null }[]>`
            select (extract(epoch from last_used_at) * 1e6)::bigint::text as t from core_api_keys where id = ${k.id}`
        )[0]!.t
      expect(await lastUsed()).toBeNull()
      const header = `Bearer ${k.secret}`
      expect((await keys.authenticate(header)).id).toBe(k.id)
      const first = await lastUsed()
      expect(first).toMatch(/^\d+$/)
      for (let i = 0; i < 5; i++) await keys.authenticate(header)
      expect(await lastUsed()).toBe(first)
      // Keep using the key until the interval has passed and a use is written again (no sooner than the interval).
      await waitFor(
        async () => {
          await keys.authenticate(header)
          return BigInt((await lastUsed())!) > BigInt(first!)
        },
        { message: 'a use after the interval to be written' },
      )
      expect(BigInt((await lastUsed())!) - BigInt(first!)).toBeGreaterThanOrEqual(1_000_000n)
    } finally {
      await keys.close()
      redis.disconnect()
    }
  })
})
