/**
 * POST /api/projects/import: a JSON-lines upload, stored, then loaded by the projects.import job through
 * mapAndUpsert. The job's result at /api/jobs/:id counts and explains every line; the plan's project limit
 * holds over the whole load (all or nothing); a viewer, another tenant and a bad upload are refused.
 */
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const ctx = useApp(() => ({ IMPORT_DIR: join(process.env.TMPDIR ?? '/tmp', `tk-imports-${process.pid}-${Date.now()}`), IMPORT_MAX_BYTES: '4096' }))
let worker: WorkerRuntime
let t: TenantFixture

const plan = (key: string, tierLevel: number, projects: number | null): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members'],
  limits: { members: null, projects, apiKeys: null },
  tierLevel,
  sortOrder: tierLevel,
})

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [plan('free', 0, 6)])
  worker = await startWorkers(ctx.app.services, { scopes: ['tenant'], concurrency: 2 })
  t = await tenantWith(ctx.app)
})
afterAll(async () => {
  await worker?.close(5000)
})

const ndjson = (lines: unknown[]) => `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`
const upload = (who: TenantFixture['editor'], body: string, type = 'application/x-ndjson') => t.as(who).post('/projects/import', body, { 'content-type': type })
const settled = (id: string) =>
  waitFor(
    async () => {
      const job = (await t.as(t.admin).get(`/jobs/${id}`)).json()
      return job.status === 'completed' || job.status === 'failed' ? job : undefined
    },
    { message: `import job ${id}`, interval: 50 },
  )
const uploads = () => {
  const dir = join(ctx.app.services.config.imports.dir, t.id)
  return existsSync(dir) ? readdirSync(dir) : []
}

describe('POST /api/projects/import', () => {
  it('loads new and existing projects and reports every rejected line with its number and field', async () => {
    const existing = (await t.as(t.editor).post('/projects', { name: 'before' })).json()
    const res = await upload(
      t.editor,
      ndjson([
        { name: 'imported one', description: 'from a file' },
        { id: existing.id, name: 'renamed by import', status: 'archived' },
        'not json {',
        { name: 'bad status', status: 'deleted' },
        { description: 'no name' },
        { name: 'sneaky', createdBy: '00000000-0000-4000-8000-000000000000', tenant_id: 'x' },
      ]),
    )
    expect(res.statusCode).toBe(202)
    expect(res.json()).toMatchObject({ jobType: 'projects.import', bytes: expect.any(Number) })
    const job = await settled(res.json().id)
    expect(job.status).toBe('completed')
    expect(job.result).toMatchObject({ inserted: 2, updated: 1, rejected: 3, duplicates: 0 })
    expect(job.result.rejectedRows).toEqual([
      { row: 3, reason: 'not valid JSON' },
      { row: 4, field: 'status', reason: expect.stringContaining('one of active, archived') },
      { row: 5, field: 'name', reason: 'is required' },
    ])
    const list = (await t.as(t.viewer).get('/projects?limit=50')).json().items as { name: string; status: string; createdBy: string; id: string }[]
    expect(list.find((p) => p.id === existing.id)).toMatchObject({ name: 'renamed by import', status: 'archived' })
    // createdBy is the uploader, never a value from the file.
    expect(list.find((p) => p.name === 'sneaky')!.createdBy).toBe(t.editor.id)
    expect(uploads()).toEqual([]) // the file is gone once loaded
  })

  it('imports nothing when the load would pass the plan’s project limit', async () => {
    const before = (await t.as(t.viewer).get('/projects?limit=50')).json().items.length // 3 of 6
    const res = await upload(t.editor, ndjson(Array.from({ length: 4 }, (_, i) => ({ name: `over ${i}` }))))
    expect(res.statusCode).toBe(202)
    const job = await settled(res.json().id)
    expect(job.status).toBe('failed')
    expect(job.errorLog).toContain('Your plan allows 6 projects; this import would make')
    expect((await t.as(t.viewer).get('/projects?limit=50')).json().items.length).toBe(before)
    expect(uploads()).toEqual([])
  })

  it('refuses a viewer, another tenant’s member, a wrong content type and an upload over IMPORT_MAX_BYTES', async () => {
    const viewer = await upload(t.viewer, ndjson([{ name: 'x' }]))
    expect(viewer.statusCode).toBe(403)
    expect(viewer.json().code).toBe('INSUFFICIENT_ROLE')
    const other = await tenantWith(ctx.app)
    const cross = await other.editor.c.post('/api/projects/import', ndjson([{ name: 'x' }]), { 'x-tenant-id': t.slug, 'content-type': 'application/x-ndjson' })
    expect(cross.statusCode).toBe(404)
    expect(cross.json().code).toBe('TENANT_NOT_FOUND')
    const wrongType = await upload(t.editor, 'name,description\nx,y\n', 'text/csv')
    expect(wrongType.statusCode).toBe(415)
    expect(wrongType.json().code).toBe('UNSUPPORTED_MEDIA_TYPE')
    const big = await upload(t.editor, ndjson(Array.from({ length: 200 }, (_, i) => ({ name: `big ${i}`, description: 'x'.repeat(40) }))))
    expect(big.statusCode).toBe(413)
    expect(big.json()).toMatchObject({ code: 'BODY_TOO_LARGE', statusCode: 413 })
    expect(uploads()).toEqual([]) // nothing half-written is left
  })
})
