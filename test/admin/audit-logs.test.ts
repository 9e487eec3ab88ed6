/** /admin/api/audit-logs: query by tenant, actor, action prefix and time range, paged; exported as streamed JSON lines. */
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { uuidv7 } from 'uuidv7'
import { auditLogs } from '../../drizzle/host/schema.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { auditRows, platformAdmin, UA, ua } from './helpers.js'

const ctx = useApp()
let ops: Member
let plain: Member
const tenantId = randomUUID()
const bigTenantId = randomUUID()
const actor = randomUUID()

const at = (iso: string) => new Date(iso)

beforeAll(async () => {
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  const row = (action: string, createdAt: Date, extra: Partial<typeof auditLogs.$inferInsert> = {}) => ({
    id: uuidv7(),
    action,
    tenantId,
    createdAt,
    metadata: { n: action },
    ...extra,
  })
  await ctx.app.host.db.insert(auditLogs).values([
    row('tenant.suspended', at('2026-01-01T10:00:00Z'), { actorUserId: actor, ip: '10.1.1.1', userAgent: 'x' }),
    row('tenant.resumed', at('2026-01-02T10:00:00Z'), { actorUserId: actor }),
    row('tenantx.other', at('2026-01-03T10:00:00Z')),
    row('billing.subscription_updated', at('2026-01-04T10:00:00Z')),
    row('tenant.deleted', at('2026-01-05T10:00:00Z')),
  ])
  // More than one export batch (1000 rows) for the streaming test.
  await ctx.app.host.db
    .insert(auditLogs)
    .values(Array.from({ length: 2500 }, (_, i) => ({ id: uuidv7(), action: 'bulk.entry', tenantId: bigTenantId, metadata: { i } })))
})

const get = (url: string) => ops.c.get(url, ua)
const ids = (res: { json(): { items: { action: string }[] } }) => res.json().items.map((e) => e.action)

describe('who may read /admin/api/audit-logs', () => {
  it('anonymous: 401; a user who is no platform admin: 403', async () => {
    for (const url of ['/admin/api/audit-logs', '/admin/api/audit-logs?format=jsonl']) {
      expect((await ctx.app.inject(url)).statusCode).toBe(401)
      const denied = await plain.c.get(url)
      expect(denied.statusCode).toBe(403)
      expect(denied.json()).toMatchObject({ statusCode: 403, code: 'PLATFORM_ADMIN_REQUIRED' })
    }
  })
})

describe('GET /admin/api/audit-logs', () => {
  it('filters by tenant, actor, action prefix and time range, newest first', async () => {
    const all = await get(`/admin/api/audit-logs?tenantId=${tenantId}`)
    expect(all.statusCode).toBe(200)
    expect(all.headers['content-type']).toMatch(/^application\/json/)
    expect(ids(all)).toEqual(['tenant.deleted', 'billing.subscription_updated', 'tenantx.other', 'tenant.resumed', 'tenant.suspended'])
    expect(all.json().items.at(-1)).toMatchObject({ tenantId, actorUserId: actor, ip: '10.1.1.1', userAgent: 'x', metadata: { n: 'tenant.suspended' } })
    expect(all.json().items.at(-1).createdAt).toMatch(/^2026-01-01T10:00:00\.0+Z$/)
    // A prefix: `tenant.` is not `tenantx.`; LIKE's wildcards match themselves.
    expect(ids(await get(`/admin/api/audit-logs?tenantId=${tenantId}&action=tenant.`))).toEqual(['tenant.deleted', 'tenant.resumed', 'tenant.suspended'])
    expect(ids(await get(`/admin/api/audit-logs?tenantId=${tenantId}&action=%25`))).toEqual([])
    expect(ids(await get(`/admin/api/audit-logs?actorUserId=${actor}`))).toEqual(['tenant.resumed', 'tenant.suspended'])
    const range = await get(`/admin/api/audit-logs?tenantId=${tenantId}&since=2026-01-02T10:00:00Z&until=2026-01-04T10:00:00Z`)
    expect(ids(range)).toEqual(['tenantx.other', 'tenant.resumed'])
  })

  it('pages with a cursor', async () => {
    const first = (await get(`/admin/api/audit-logs?tenantId=${tenantId}&limit=2`)).json()
    expect(first.items.map((e: { action: string }) => e.action)).toEqual(['tenant.deleted', 'billing.subscription_updated'])
    const second = (await get(`/admin/api/audit-logs?tenantId=${tenantId}&limit=2&cursor=${first.nextCursor}`)).json()
    expect(second.items.map((e: { action: string }) => e.action)).toEqual(['tenantx.other', 'tenant.resumed'])
    const last = (await get(`/admin/api/audit-logs?tenantId=${tenantId}&limit=2&cursor=${second.nextCursor}`)).json()
    expect(last).toMatchObject({ items: [{ action: 'tenant.suspended' }], nextCursor: null })
  })

  it('refuses bad input with the kit’s error body', async () => {
    for (const query of ['tenantId=acme', 'since=yesterday', 'format=csv', 'limit=1000', 'cursor=1', 'extra=1', 'since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z']) {
      const res = await get(`/admin/api/audit-logs?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, error: 'Bad Request', code: expect.any(String), message: expect.any(String) })
    }
    expect((await get('/admin/api/audit-logs?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z')).json().code).toBe('INVALID_TIME_RANGE')
  })
})

describe('GET /admin/api/audit-logs?format=jsonl', () => {
  it('streams every matching entry as JSON lines (several cursor batches), and audits the export', async () => {
    const res = await get(`/admin/api/audit-logs?format=jsonl&tenantId=${bigTenantId}`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/x-ndjson; charset=utf-8')
    expect(res.headers['content-disposition']).toContain('audit-logs.jsonl')
    const lines = res.body.split('\n')
    expect(lines.pop()).toBe('')
    const entries = lines.map((l) => JSON.parse(l))
    expect(entries).toHaveLength(2500)
    expect(new Set(entries.map((e) => e.id)).size).toBe(2500)
    expect(entries[0]).toMatchObject({ action: 'bulk.entry', tenantId: bigTenantId, metadata: { i: 2499 } })
    expect(entries.at(-1).metadata).toEqual({ i: 0 })

    const filtered = await get(`/admin/api/audit-logs?format=jsonl&tenantId=${tenantId}&action=tenant.`)
    expect(filtered.body.trim().split('\n').map((l) => JSON.parse(l).action)).toEqual(['tenant.deleted', 'tenant.resumed', 'tenant.suspended'])

    const exported = (await auditRows(ctx.app, 'admin.audit_logs_exported')).filter((r) => r.actorUserId === ops.id)
    expect(exported).toHaveLength(2)
    expect(exported[0]).toMatchObject({ userAgent: UA, ip: expect.stringMatching(/^10\./), metadata: { filter: { tenantId: bigTenantId } } })
  })

  it('answers an empty body when nothing matches', async () => {
    const res = await get(`/admin/api/audit-logs?format=jsonl&tenantId=${randomUUID()}`)
    expect(res.statusCode).toBe(200)
    expect(res.body).toBe('')
  })
})

describe('a JSONL export read slowly', () => {
  const slow = useApp({}, { appVars: { DB_STATEMENT_TIMEOUT_MS: '1000' } })

  it('outlasts DB_STATEMENT_TIMEOUT_MS: the cursor has its own bound, and the pool gets its setting back', async () => {
    const { app } = slow
    const admin = await platformAdmin(app)
    const tenant = randomUUID()
    // The seed itself may take longer than the timeout on a busy machine.
    await app.host.sql.begin(async (tx) => {
      await tx`set local statement_timeout = 0`
      await tx`
        insert into sys_audit_logs (id, action, tenant_id, metadata)
        select gen_random_uuid(), 'slow.entry', ${tenant}::uuid, jsonb_build_object('i', g, 'pad', repeat('x', 200)) from generate_series(1, 30000) g`
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    const cookie = Object.entries(admin.c.cookies)
      .map(([k, v]) => `${k}=${v}`)
      .join('; ')
    const lines = await new Promise<number>((resolve, reject) => {
      http
        .get({ port, host: '127.0.0.1', path: `/admin/api/audit-logs?format=jsonl&tenantId=${tenant}`, headers: { cookie } }, (res) => {
          let n = 0
          let paused = false
          res.on('data', (chunk: Buffer) => {
            for (const b of chunk) if (b === 10) n++
            // Stop reading for longer than the statement timeout once the export is under way.
            if (!paused) {
              paused = true
              res.pause()
              setTimeout(() => res.resume(), 2500)
            }
          })
          res.on('end', () => resolve(n))
          res.on('error', reject)
        })
        .on('error', reject)
    })
    expect(lines).toBe(30000)
    const [timeout] = await app.host.sql<{ statement_timeout: string }[]>`show statement_timeout`
    expect(timeout?.statement_timeout).toBe('1s')
  })
})
