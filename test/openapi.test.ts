/**
 * The OpenAPI contract users generate clients from (/docs/json): Redocly's linter with its
 * recommended rules must find no error, and the rules src/core/lib/openapi.ts derives from route
 * configuration hold on the generated document. (Responses are held to this document by the
 * contract check every test app runs: test/helpers/contract.ts.)
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import { Type } from 'typebox'
import { beforeAll, describe, expect, it } from 'vitest'
import { documentRoute, operationIdFor, simplifySchema } from '../src/core/lib/openapi.js'
import { unavailable } from '../src/core/lib/errors.js'
import { ErrorSchema } from '../src/core/lib/schemas.js'
import { toErrorBody } from '../src/core/plugins/errors.js'
import { installContractCheck, takeContractViolations } from './helpers/contract.js'
import { useApp } from './helpers/use-app.js'

// biome-ignore lint/suspicious/noExplicitAny: a parsed JSON document, read by path in assertions
type Json = Record<string, any>

let spec: Json
const operations: { method: string; path: string; op: Json }[] = []

const ctx = useApp()
beforeAll(async () => {
  spec = (await ctx.app.inject('/docs/json')).json()
  for (const [path, item] of Object.entries(spec.paths as Json)) {
    for (const [method, op] of Object.entries(item as Json)) operations.push({ method, path, op })
  }
})

const op = (method: string, path: string) => {
  const found = spec.paths[path]?.[method]
  if (!found) throw new Error(`${method} ${path} is not in the document`)
  return found as Json
}
const param = (o: Json, where: string, name: string) => (o.parameters ?? []).find((p: Json) => p.in === where && p.name === name)

describe('the generated OpenAPI document', () => {
  it('passes `redocly lint` (recommended rules) with no error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tk-openapi-'))
    try {
      const file = join(dir, 'openapi.json')
      await writeFile(file, JSON.stringify(spec))
      const bin = join(import.meta.dirname, '..', 'node_modules', '.bin', 'redocly')
      const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' }
      // Exits 1 when it finds errors: the report is read either way.
      const out = await promisify(execFile)(bin, ['lint', file, '--format=json'], { env, maxBuffer: 64 << 20 }).catch((err) => err)
      const report = JSON.parse(out.stdout.slice(out.stdout.indexOf('{')))
      const errors = report.problems.filter((p: Json) => p.severity === 'error')
      expect(errors.map((p: Json) => `${p.ruleId} at ${p.location?.[0]?.pointer}: ${p.message}`)).toEqual([])
      expect(report.totals.errors).toBe(0)
      // What remains are warnings we accept: no license (the kit is the adopter's to license), a localhost
      // server in tests, health routes with no 4xx (they take no input), redirect-only OAuth routes.
      const accepted = new Set(['info-license', 'no-server-example.com', 'operation-4xx-response', 'operation-2xx-response'])
      expect(report.problems.filter((p: Json) => !accepted.has(p.ruleId)).map((p: Json) => `${p.ruleId}: ${p.message}`)).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('gives every operation a unique operationId and a summary, and names a server', () => {
    expect(operations.length).toBeGreaterThan(40)
    const ids = operations.map((o) => o.op.operationId)
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
    expect(operations.filter((o) => !o.op.summary).map((o) => `${o.method} ${o.path}`)).toEqual([])
    expect(spec.servers).toEqual([{ url: ctx.env.config.appBaseUrl }])
    expect(operationIdFor('GET', '/t/:tenant/api/projects/:id')).toBe('getTByTenantApiProjectsById')
  })

  it('declares no security on public routes, only the session on session routes, session or API key under /api', () => {
    for (const [method, path] of [
      ['get', '/health'],
      ['get', '/health/ready'],
      ['post', '/auth/signup'],
      ['post', '/auth/login'],
      ['get', '/auth/google/login'],
      ['get', '/auth/google/callback'],
      ['get', '/billing/plans'],
      ['post', '/webhooks/stripe'],
    ] as const) {
      expect(op(method, path).security, `${method} ${path}`).toEqual([])
    }
    for (const [method, path] of [
      ['get', '/me'],
      ['put', '/me/active-tenant'],
      ['get', '/tenants'],
      ['post', '/tenants'],
      ['post', '/auth/logout'],
      ['get', '/auth/csrf'],
    ] as const) {
      expect(op(method, path).security, `${method} ${path}`).toEqual([{ session: [] }])
      expect(op(method, path).responses['401'], `${method} ${path}`).toBeDefined()
    }
    const api = operations.filter((o) => /^\/(t\/\{tenant\}\/)?api\//.test(o.path))
    expect(api.length).toBeGreaterThan(20)
    for (const { method, path, op } of api) {
      expect(op.security, `${method} ${path}`).toEqual([{ session: [] }, { apiKey: [] }])
      for (const code of ['400', '401', '403', '404', '409', '429', '500', '503'])
        expect(op.responses[code], `${method} ${path} ${code}`).toBeDefined()
    }
    expect(spec.security).toBeUndefined()
  })

  it('declares the CSRF header on cookie writes, and not on reads or public writes', () => {
    const header = param(op('post', '/api/projects'), 'header', 'x-csrf-token')
    expect(header).toMatchObject({ required: false, schema: { type: 'string' } })
    expect(param(op('put', '/me/active-tenant'), 'header', 'x-csrf-token')).toBeDefined()
    expect(param(op('delete', '/t/{tenant}/api/projects/{id}'), 'header', 'x-csrf-token')).toBeDefined()
    expect(param(op('get', '/api/projects'), 'header', 'x-csrf-token')).toBeUndefined()
    expect(param(op('post', '/auth/login'), 'header', 'x-csrf-token')).toBeUndefined()
    expect(param(op('post', '/webhooks/stripe'), 'header', 'x-csrf-token')).toBeUndefined()
  })

  it('declares the tenant path parameter on every /t/{tenant}/… operation', () => {
    const scoped = operations.filter((o) => o.path.startsWith('/t/{tenant}/'))
    expect(scoped.length).toBeGreaterThan(10)
    for (const { method, path, op } of scoped) expect(param(op, 'path', 'tenant'), `${method} ${path}`).toMatchObject({ required: true })
    expect(param(op('get', '/t/{tenant}/api/projects/{id}'), 'path', 'id')).toMatchObject({ required: true })
  })

  it('declares the optional X-Tenant-ID header on the other tenant routes (how a client names the tenant there), only there', () => {
    const api = operations.filter((o) => /^\/api\//.test(o.path))
    expect(api.length).toBeGreaterThan(20)
    for (const { method, path, op } of api)
      expect(param(op, 'header', 'x-tenant-id'), `${method} ${path}`).toMatchObject({ required: false, schema: { type: 'string' } })
    for (const { method, path, op } of operations.filter((o) => !/^\/api\//.test(o.path)))
      expect(param(op, 'header', 'x-tenant-id'), `${method} ${path}`).toBeUndefined()
  })

  it('documents errors from route configuration, as one $ref to the Error component', () => {
    expect(Object.keys(spec.components.schemas)).toContain('Error')
    expect(spec.components.schemas['def-0']).toBeUndefined()
    const write = op('post', '/api/projects')
    for (const code of ['400', '403', '413', '415', '429', '500', '503']) {
      expect(write.responses[code].content['application/json'].schema, code).toEqual({ $ref: '#/components/schemas/Error' })
    }
    expect(write.responses['404'].description).toBe('Not Found')
    // Rate limited unless the route opts out (Stripe's webhook bursts, health probes).
    expect(op('post', '/auth/login').responses['429']).toBeDefined()
    expect(op('post', '/webhooks/stripe').responses['429']).toBeUndefined()
    expect(op('get', '/health').responses['429']).toBeUndefined()
    // Every 429 says when to retry.
    for (const { method, path, op } of operations) {
      if (op.responses['429']) expect(op.responses['429'].headers?.['retry-after']?.schema, `${method} ${path}`).toEqual({ type: 'integer', minimum: 0 })
    }
    // Billing-gated: 402 and 403.
    expect(op('get', '/api/projects/export').responses['402']).toBeDefined()
    // No route answers an error outside the Error shape.
    for (const { method, path, op } of operations) {
      for (const [code, response] of Object.entries(op.responses as Json)) {
        if (Number(code) >= 400 && !(path === '/health/ready' && code === '503'))
          expect(response.content['application/json'].schema, `${method} ${path} ${code}`).toEqual({ $ref: '#/components/schemas/Error' })
      }
    }
  })

  it('lists the stable error codes (the core’s and every feature’s) with their status, and the Error schema points there', () => {
    const codes = spec['x-error-codes'] as Record<string, { status: number | number[]; description: string }>
    expect(codes).toEqual(JSON.parse(JSON.stringify(ctx.app.services.errorCodes)))
    expect(codes.VALIDATION_ERROR).toEqual({ status: 400, description: expect.any(String) })
    expect(codes.TENANT_NOT_FOUND?.status).toBe(404)
    expect(codes.PROJECT_NOT_FOUND?.status).toBe(404) // a feature's
    expect(codes.SUBSCRIPTION_REQUIRED?.status).toBe(402)
    for (const [code, info] of Object.entries(codes)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]*$/)
      expect(info.description.length, code).toBeGreaterThan(5)
    }
    expect(spec.components.schemas.Error.properties.code.description).toMatch(/x-error-codes/)
  })

  it('is titled after APP_NAME', () => {
    expect(spec.info.title).toBe(`${ctx.app.services.config.appName} API`)
  })

  it('does not require query parameters that have a default (the README’s GET /api/projects)', () => {
    expect(param(op('get', '/api/projects'), 'query', 'limit')).toMatchObject({ required: false, schema: { default: 20 } })
    for (const { method, path, op } of operations) {
      for (const p of op.parameters ?? [])
        if (p.in === 'query' && p.schema.default !== undefined) expect(p.required, `${method} ${path} ${p.name}`).toBe(false)
    }
  })

  it('lists literal unions as one enum, and nullables without `type: null`', () => {
    expect(param(op('get', '/api/projects'), 'query', 'status').schema).toEqual({ type: 'string', enum: ['active', 'archived'] })
    expect(JSON.stringify(spec)).not.toContain('"type":"null"')
    expect(simplifySchema(Type.Union([Type.Literal('a'), Type.Literal('b'), Type.Null()]))).toEqual({
      type: 'string',
      enum: ['a', 'b', null],
      nullable: true,
    })
    expect(simplifySchema(Type.Union([Type.String({ maxLength: 3 }), Type.Null()]))).toEqual({
      type: 'string',
      maxLength: 3,
      nullable: true,
    })
    // A union of objects stays a union.
    const objects = simplifySchema(Type.Union([Type.Object({ a: Type.String() }), Type.Object({ b: Type.String() })])) as Json
    expect(objects.anyOf).toHaveLength(2)
  })

  it('declares the export’s media types, the webhook’s request body, and the portal body as optional', () => {
    expect(Object.keys(op('get', '/api/projects/export').responses['200'].content).sort()).toEqual(['application/x-ndjson', 'text/csv'])
    expect(op('post', '/webhooks/stripe').requestBody).toMatchObject({ required: true, content: { 'application/json': {} } })
    expect(op('post', '/api/billing/portal').requestBody.required).toBe(false)
    expect(op('post', '/api/projects').requestBody.required).toBe(true)
    // A streamed upload is bytes on the wire (a typeless body schema stops Swagger UI's rendering).
    expect(op('post', '/api/projects/import').requestBody.content['application/x-ndjson'].schema).toMatchObject({ type: 'string', format: 'binary' })
  })
})

describe('the response contract check (test/helpers/contract.ts)', () => {
  it('turns an undocumented status, a wrong body or an undeclared media type into 500 CONTRACT_VIOLATION, and records it', async () => {
    const probe = Fastify()
    probe.addSchema(ErrorSchema)
    probe.addHook('onRoute', (route) => documentRoute(route))
    installContractCheck(probe)
    probe.setErrorHandler((err, _req, reply) => {
      const body = toErrorBody(err as Error)
      return reply.code(body.statusCode).send(body)
    })
    const Thing = Type.Object({ id: Type.Integer() })
    probe.get('/ok', { schema: { summary: 'ok', response: { 200: Thing } } }, async () => ({ id: 1 }))
    probe.get('/teapot', { schema: { summary: 'undocumented status', response: { 200: Thing } } }, async (_req, reply) =>
      reply.code(418 as never).send({ id: 1 } as never),
    )
    probe.get(
      '/wrong',
      { schema: { summary: 'wrong body', response: { 200: Type.Object({ id: Type.String({ format: 'uuid' }) }) } } },
      async () => ({ id: 'nope' }),
    )
    probe.get('/csv', { schema: { summary: 'undeclared media type', response: { 200: Thing } } }, async (_req, reply) =>
      reply.type('text/csv').send('id\n1'),
    )
    probe.get('/error', { schema: { summary: 'documented error', response: { 200: Thing } } }, async () => {
      throw unavailable('SERVICE_UNAVAILABLE', 'down')
    })
    probe.get('/hidden', { schema: { hide: true } }, async (_req, reply) => reply.code(403).send({ message: 'not the kit’s error shape' }))
    try {
      expect((await probe.inject('/ok')).statusCode).toBe(200)
      expect((await probe.inject('/error')).statusCode).toBe(503) // 503 and 500 are documented on every route
      expect(takeContractViolations()).toEqual([])
      for (const url of ['/teapot', '/wrong', '/csv', '/hidden']) {
        const res = await probe.inject(url)
        expect(res.statusCode, url).toBe(500)
        expect(res.json(), url).toMatchObject({ code: 'CONTRACT_VIOLATION' })
      }
      const found = takeContractViolations()
      expect(found).toHaveLength(4)
      expect(found[0]).toMatch(/GET \/teapot → 418: status 418 is not documented/)
      expect(found[1]).toMatch(/GET \/wrong → 200: body: data\/id must match format "uuid"/)
      expect(found[2]).toMatch(/GET \/csv → 200: body: a text\/csv response where JSON was documented/)
      expect(found[3]).toMatch(/GET \/hidden → 403: error body: data must have required property 'statusCode'/)
    } finally {
      takeContractViolations()
      await probe.close()
    }
  })
})

describe('the platform admin API in the document', () => {
  const admin = () => operations.filter((o) => o.path.startsWith('/admin/api/'))

  it('every /admin/api route: tag admin, session or platform key, typed input, 2xx and its errors (400 for input, 401, 403)', () => {
    expect(admin().length).toBeGreaterThan(20)
    for (const { method, path, op: o } of admin()) {
      const name = `${method.toUpperCase()} ${path}`
      expect(o.tags, name).toEqual(['admin'])
      expect(o.security, name).toEqual([{ session: [] }, { adminApiKey: [] }])
      const statuses = Object.keys(o.responses)
      expect(statuses.some((s) => s.startsWith('2')), name).toBe(true)
      expect(statuses, name).toEqual(expect.arrayContaining(['401', '403']))
      const takesInput = (o.parameters ?? []).length > 0 || o.requestBody !== undefined
      if (takesInput) expect(statuses, name).toContain('400')
      for (const status of statuses.filter((s) => s !== '204')) expect(o.responses[status].content, `${name} ${status}`).toBeDefined()
    }
  })

  it('README lists every /admin/api route, and only those', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8')
    const table = readme.slice(readme.indexOf('<!-- admin-api:start -->'), readme.indexOf('<!-- admin-api:end -->'))
    const listed = [...table.matchAll(/^\| `([A-Z]+ \/admin\/api\/[^`]*)` \|/gm)].map((m) => m[1])
    expect(listed.length).toBeGreaterThan(0)
    expect(new Set(listed).size).toBe(listed.length)
    expect([...listed].sort()).toEqual(admin().map((o) => `${o.method.toUpperCase()} ${o.path}`).sort())
  })
})
