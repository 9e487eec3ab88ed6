/**
 * Malformed input never reaches a handler and never causes a 5xx: bad JSON, wrong content types,
 * unknown fields, wrong types, oversized values and bodies, malformed ids, malformed tenant
 * references (header, path, subdomain), pagination out of range and garbage cursors. Every error body
 * is `{ statusCode, error, message, code }` with a stable code.
 */
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Client, createClient } from '../helpers/client.js'
import { useApp } from '../helpers/use-app.js'

const SUFFIX = 'tenants.test'
let c: Client
let slug: string
let projectId: string
let userId: string
const seen: LightMyRequestResponse[] = []

const ctx = useApp({ TENANT_DOMAIN_SUFFIX: SUFFIX })
beforeAll(async () => {
  const app = ctx.app
  c = createClient(app)
  const signup = await c.signup('malformed@example.com')
  expect(signup.statusCode).toBe(201)
  slug = signup.json().tenant.slug
  userId = signup.json().user.id
  // Verified (as through the emailed link): creating API keys needs it.
  await app.host.sql`update core_users set email_verified_at = now() where id = ${userId}`
  projectId = (await c.post('/api/projects', { name: 'target' })).json().id
})
afterAll(async () => {
  // Whatever each test asserted, no response of this file was a 5xx or lacked the error shape.
  expect(seen.length).toBeGreaterThan(50)
  for (const res of seen) expect(res.statusCode, res.body).toBeLessThan(500)
})

/** Send with the session (cookie + CSRF token); raw payloads and content types allowed. */
async function send(opts: InjectOptions): Promise<LightMyRequestResponse> {
  const res = await c.request(opts)
  seen.push(res)
  return res
}

function expectError(res: LightMyRequestResponse, status: number, code: string, label = '') {
  expect(res.statusCode, `${label} ${res.body}`).toBe(status)
  const body = res.json()
  expect(body, label).toEqual({ statusCode: status, error: expect.any(String), message: expect.any(String), code })
}

const json = { 'content-type': 'application/json' }

describe('bodies', () => {
  it('invalid or empty JSON → 400 INVALID_BODY', async () => {
    for (const payload of ['{"name":', '{name: "x"}', 'not json', '{"name":"x"}}', '\u0000', '[']) {
      expectError(await send({ method: 'POST', url: '/api/projects', headers: json, payload }), 400, 'INVALID_BODY', payload)
    }
    expectError(await send({ method: 'POST', url: '/api/projects', headers: json, payload: '' }), 400, 'INVALID_BODY', 'empty')
  })

  it('a content type the API does not speak → 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    for (const type of ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'image/png']) {
      const res = await send({ method: 'POST', url: '/api/projects', headers: { 'content-type': type }, payload: 'name=x' })
      expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', type)
    }
    // text/plain too: the API speaks JSON only (it used to be parsed as a string, then refused by the schema as a 400).
    expectError(
      await send({ method: 'POST', url: '/api/projects', headers: { 'content-type': 'text/plain' }, payload: '{"name":"x"}' }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    )
  })

  it('prototype pollution attempts → 400', async () => {
    const res = await send({ method: 'POST', url: '/api/projects', headers: json, payload: '{"name":"x","__proto__":{"admin":true}}' })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ statusCode: 400, code: expect.stringMatching(/^[A-Z_]+$/) })
    const ctor = await send({
      method: 'POST',
      url: '/api/projects',
      headers: json,
      payload: '{"name":"x","constructor":{"prototype":{"admin":true}}}',
    })
    expect(ctor.statusCode).toBe(400)
  })

  it('unknown fields, wrong types, missing and oversized values → 400 VALIDATION_ERROR', async () => {
    const cases: [string, string, unknown][] = [
      ['POST', '/api/projects', { name: 'x', owner: 'me' }],
      ['POST', '/api/projects', { name: 'x', id: '0190a2b4-0000-7000-8000-000000000000' }],
      ['POST', '/api/projects', {}],
      ['POST', '/api/projects', { name: '' }],
      ['POST', '/api/projects', { name: { first: 'x' } }],
      ['POST', '/api/projects', { name: ['a', 'b'] }],
      // Bodies are not type-coerced (only query strings and params are): a number is not a name.
      ['POST', '/api/projects', { name: 123 }],
      ['POST', '/api/projects', { name: 'x', description: 42 }],
      ['PATCH', `/api/projects/${projectId}`, { name: true }],
      ['POST', '/api/projects', { name: 'x'.repeat(201) }],
      ['POST', '/api/projects', { name: 'x', description: 'd'.repeat(5001) }],
      ['POST', '/api/projects', { name: 'x', description: { text: 'd' } }],
      ['POST', '/api/projects', { name: 'x', description: ['a', 'b'] }],
      ['POST', '/api/projects', [{ name: 'x' }]],
      ['POST', '/api/projects', 'just a string'],
      ['PATCH', `/api/projects/${projectId}`, {}],
      ['PATCH', `/api/projects/${projectId}`, { status: 'deleted' }],
      ['PATCH', `/api/projects/${projectId}`, { status: 5 }],
      ['PATCH', `/api/projects/${projectId}`, { createdBy: userId }],
      ['PATCH', `/api/projects/${projectId}`, { name: 'y'.repeat(10_000) }],
      ['POST', '/api/members', { email: 'not-an-email', role: 'member' }],
      ['POST', '/api/members', { email: `${'a'.repeat(250)}@example.com`, role: 'member' }],
      ['POST', '/api/members', { email: 'x@example.com', role: 'owner' }],
      ['POST', '/api/members', { email: 'x@example.com', role: 'member', localRole: 'god' }],
      ['PATCH', `/api/members/${userId}`, {}],
      ['PATCH', `/api/members/${userId}`, { role: 'superadmin' }],
      ['PUT', `/api/members/${userId}/permissions`, { resource: 'projects', action: 'edit' }],
      ['PUT', `/api/members/${userId}/permissions`, { resource: 'projects', action: 'edit', granted: 'maybe' }],
      ['PUT', `/api/members/${userId}/permissions`, { resource: 'x'.repeat(64), action: 'edit', granted: true }],
      ['PUT', `/api/members/${userId}/permissions`, { resource: '../etc', action: 'edit', granted: true }],
      ['PUT', '/me/active-tenant', { tenant: '' }],
      ['PUT', '/me/active-tenant', { tenant: 'x'.repeat(64) }],
      ['POST', '/tenants', { name: 'x', slug: 'y', plan: 'enterprise' }],
    ]
    for (const [method, url, payload] of cases) {
      const res = await send({ method: method as InjectOptions['method'], url, headers: json, payload: JSON.stringify(payload) })
      expectError(res, 400, 'VALIDATION_ERROR', `${method} ${url} ${JSON.stringify(payload).slice(0, 80)}`)
    }
    // Nothing above changed the project.
    expect((await send({ method: 'GET', url: `/api/projects/${projectId}` })).json()).toMatchObject({
      name: 'target',
      status: 'active',
      description: null,
    })
  })

  it('control characters in any text field → 400 VALIDATION_ERROR (NUL was a Postgres 22021, a 500)', async () => {
    const keyRes = await send({
      method: 'POST',
      url: '/api/api-keys',
      headers: json,
      payload: JSON.stringify({ name: 'k', role: 'viewer' }),
    })
    expect(keyRes.statusCode, keyRes.body).toBe(201)
    for (const bad of ['a\u0000b', '\u0000', 'x\u0007y', 'line\nbreak', 'tab\there', 'del\u007f', 'c1\u0085']) {
      const cases: [string, string, unknown][] = [
        ['POST', '/api/projects', { name: bad }],
        ['PATCH', `/api/projects/${projectId}`, { name: bad }],
        ['POST', '/tenants', { name: bad, slug: 'ctl-chars' }],
        ['POST', '/api/api-keys', { name: bad, role: 'viewer' }],
        ['PUT', '/me/active-tenant', { tenant: bad }],
        ['PATCH', '/me', { name: bad }],
        ['POST', '/api/billing/checkout', { planId: bad, interval: 'month' }],
      ]
      for (const [method, url, payload] of cases) {
        const res = await send({ method: method as InjectOptions['method'], url, headers: json, payload: JSON.stringify(payload) })
        expectError(res, 400, 'VALIDATION_ERROR', `${method} ${url} ${JSON.stringify(payload)}`)
      }
      // Signup is the one write without a session.
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/auth/signup',
        headers: json,
        remoteAddress: '10.250.0.1',
        payload: JSON.stringify({ email: 'ctl@example.com', password: 'correct horse battery staple', name: bad }),
      })
      seen.push(res)
      expectError(res, 400, 'VALIDATION_ERROR', `signup ${JSON.stringify(bad)}`)
    }
    // Free text may span lines (tab, LF, CR), but never carry NUL or other controls.
    for (const bad of ['a\u0000b', 'bell\u0007', 'esc\u001b[31m']) {
      for (const [method, url] of [
        ['POST', '/api/projects'],
        ['PATCH', `/api/projects/${projectId}`],
      ] as const) {
        const res = await send({ method, url, headers: json, payload: JSON.stringify({ name: 'ok', description: bad }) })
        expectError(res, 400, 'VALIDATION_ERROR', `${method} description ${JSON.stringify(bad)}`)
      }
    }
    const multi = await send({
      method: 'POST',
      url: '/api/projects',
      headers: json,
      payload: JSON.stringify({ name: 'Ünïcode ✓ 名前', description: 'line one\r\nline two\tindented' }),
    })
    expect(multi.statusCode, multi.body).toBe(201)
    expect(multi.json()).toMatchObject({ name: 'Ünïcode ✓ 名前', description: 'line one\r\nline two\tindented' })
  })

  it('a body over the 1 MiB limit → 413 BODY_TOO_LARGE', async () => {
    const res = await send({
      method: 'POST',
      url: '/api/projects',
      headers: json,
      payload: JSON.stringify({ name: 'x', description: 'd'.repeat(1.1 * 1024 * 1024) }),
    })
    expectError(res, 413, 'BODY_TOO_LARGE')
  })
})

describe('ids and urls', () => {
  it('a malformed id → 400 VALIDATION_ERROR on every method', async () => {
    for (const id of [
      'not-a-uuid',
      '123',
      '0190a2b4-0000-7000-8000-00000000000',
      '0190a2b4-0000-7000-8000-00000000000g',
      "1' or '1'='1",
      '%27%20or%201%3D1',
      // Ajv's format 'uuid' accepts the URN form; Postgres does not (it was a 500).
      'urn:uuid:0190a2b4-0000-7000-8000-000000000000',
      '{0190a2b4-0000-7000-8000-000000000000}',
    ]) {
      for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
        const res = await send({
          method,
          url: `/api/projects/${id}`,
          ...(method === 'PATCH' ? { headers: json, payload: '{"name":"x"}' } : {}),
        })
        expectError(res, 400, 'VALIDATION_ERROR', `${method} ${id}`)
      }
      expectError(
        await send({ method: 'PATCH', url: `/api/members/${id}`, headers: json, payload: '{"localRole":"viewer"}' }),
        400,
        'VALIDATION_ERROR',
      )
      expectError(await send({ method: 'DELETE', url: `/api/members/${id}` }), 400, 'VALIDATION_ERROR')
      expectError(await send({ method: 'DELETE', url: `/api/api-keys/${id}` }), 400, 'VALIDATION_ERROR')
      expectError(await send({ method: 'GET', url: `/api/jobs/${id}` }), 400, 'VALIDATION_ERROR')
    }
  })

  it('a well-formed id of nothing → 404 PROJECT_NOT_FOUND', async () => {
    expectError(await send({ method: 'GET', url: '/api/projects/0190a2b4-0000-7000-8000-000000000000' }), 404, 'PROJECT_NOT_FOUND')
  })

  it('broken percent-encoding and unknown routes → 4xx with codes', async () => {
    expectError(await send({ method: 'GET', url: '/api/projects/%E0%A4%A' }), 400, 'BAD_URL')
    expectError(await send({ method: 'GET', url: '/api/nothing-here' }), 404, 'NOT_FOUND')
    expectError(await send({ method: 'PUT', url: '/api/projects' }), 404, 'NOT_FOUND')
  })
})

describe('tenant references', () => {
  it('X-Tenant-ID with bad characters or length → 400 INVALID_TENANT_REF', async () => {
    for (const ref of [
      'acme corp',
      'a/b',
      '../other',
      "x'; drop table core_tenants; --",
      'ac_me',
      'a.b',
      'x'.repeat(64),
      '%61cme',
      'ümlaut',
      '<script>',
    ]) {
      const res = await send({ method: 'GET', url: '/api/projects', headers: { 'x-tenant-id': ref } })
      expectError(res, 400, 'INVALID_TENANT_REF', ref)
      expect(res.body).not.toContain('<script>')
    }
  })

  it('a bad /t/:tenant path segment → 400 INVALID_TENANT_REF', async () => {
    for (const ref of ['bad!ref', 'a.b', 'a%20b', 'x'.repeat(64), '%3Cscript%3E']) {
      expectError(await send({ method: 'GET', url: `/t/${ref}/api/projects` }), 400, 'INVALID_TENANT_REF', ref)
    }
  })

  it('a bad subdomain → 400 INVALID_TENANT_REF', async () => {
    for (const host of [`bad_sub.${SUFFIX}`, `${'x'.repeat(64)}.${SUFFIX}`]) {
      expectError(await send({ method: 'GET', url: '/api/projects', headers: { host } }), 400, 'INVALID_TENANT_REF', host)
    }
  })

  it('well-formed references resolve; unknown ones are 404, not 400', async () => {
    expect((await send({ method: 'GET', url: '/api/projects', headers: { 'x-tenant-id': slug.toUpperCase() } })).statusCode).toBe(200)
    expectError(await send({ method: 'GET', url: '/api/projects', headers: { 'x-tenant-id': 'no-such-tenant' } }), 404, 'TENANT_NOT_FOUND')
  })
})

describe('pagination', () => {
  it('limit out of range, non-numeric, garbage cursors and unknown parameters → 400 VALIDATION_ERROR', async () => {
    for (const qs of [
      'limit=0',
      'limit=-1',
      'limit=101',
      'limit=1000',
      'limit=abc',
      'limit=1.5',
      'limit=',
      'cursor=garbage',
      'cursor=1',
      "cursor='%20or%201=1",
      'cursor=0190a2b4-0000-7000-8000-00000000000',
      'cursor=urn:uuid:0190a2b4-0000-7000-8000-000000000000',
      'status=deleted',
      'offset=10',
      'limit=10&limit=20',
    ]) {
      expectError(await send({ method: 'GET', url: `/api/projects?${qs}` }), 400, 'VALIDATION_ERROR', qs)
    }
    for (const qs of ['limit=0', 'limit=201', 'cursor=nope', 'cursor=urn:uuid:0190a2b4-0000-7000-8000-000000000000']) {
      expectError(await send({ method: 'GET', url: `/api/members?${qs}` }), 400, 'VALIDATION_ERROR', qs)
    }
    for (const qs of ['before=urn:uuid:0190a2b4-0000-7000-8000-000000000000', 'type=%00', 'type=a%01b', 'type=x%7F']) {
      expectError(await send({ method: 'GET', url: `/api/jobs?${qs}` }), 400, 'VALIDATION_ERROR', qs)
    }
    // The edges are fine.
    expect((await send({ method: 'GET', url: '/api/projects?limit=1' })).statusCode).toBe(200)
    expect((await send({ method: 'GET', url: '/api/projects?limit=100' })).statusCode).toBe(200)
  })
})

describe('guards before validation', () => {
  it('an anonymous request with a bad body or query is 401, not 400, wherever a guard applies', async () => {
    const anonymous = [
      { method: 'PATCH', url: '/me', payload: { name: 42, extra: true } },
      { method: 'PUT', url: '/me/active-tenant', payload: {} },
      { method: 'POST', url: '/tenants', payload: { slug: '!!', bogus: 1 } },
      { method: 'POST', url: '/api/projects', payload: { name: '' } },
      { method: 'GET', url: '/billing/success' },
    ] as const
    for (const { method, url, ...rest } of anonymous) {
      const res = await ctx.app.inject({ method, url, ...rest })
      seen.push(res)
      expectError(res, 401, 'UNAUTHENTICATED', `${method} ${url}`)
    }
  })
})

describe('headers and cookies', () => {
  it('a garbage session cookie is simply not a session → 401', async () => {
    for (const sid of ['garbage', 'a.b.c', '', 'x'.repeat(5000)]) {
      const res = await ctx.app.inject({ method: 'GET', url: '/api/projects', cookies: { sid } })
      seen.push(res)
      expectError(res, 401, 'UNAUTHENTICATED', sid.slice(0, 20))
    }
  })

  it('a write without or with a forged CSRF token → 403 CSRF_INVALID', async () => {
    expectError(
      await send({ method: 'POST', url: '/api/projects', headers: { ...json, 'x-csrf-token': 'forged' }, payload: '{"name":"x"}' }),
      403,
      'CSRF_INVALID',
    )
  })
})
