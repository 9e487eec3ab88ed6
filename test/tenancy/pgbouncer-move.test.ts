/**
 * A tenant behind a real PgBouncer (1.18, transaction pooling; .ci/pgbouncer) over HTTP: its catalog row's
 * pooler URL points at PgBouncer, requests read and write through it, and a move (database → shared) under
 * continuous reads answers every read while its read-only pool goes past the pooler, and refuses writes for
 * about as long as a direct move (PgBouncer's idle server connections are not waited for); the move clears
 * the pooler URL (it named the old location).
 */
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import type { Sql } from '../../src/core/db/connect.js'
import { encrypt } from '../../src/core/lib/crypto.js'
import { moveFigures } from '../../src/core/tenancy/move/index.js'
import { SHARED } from '../helpers/env.js'
import { continuousReads } from '../helpers/continuous-reads.js'
import { ensurePgBouncer, pgbouncerConsole, viaPgBouncer } from '../helpers/pgbouncer.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const unavailable = await ensurePgBouncer()
if (unavailable) console.warn(`pgbouncer-move.test.ts skipped: ${unavailable}`)

const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
const services = () => ctx.app.services
let t: TenantFixture
let console_: Sql

beforeAll(async () => {
  if (unavailable) return
  t = await tenantWith(ctx.app, { project: 'first' })
  const row = (await services().catalog.get(t.id))!
  await services()
    .host.db.update(tenants)
    .set({ poolerUrlEncrypted: encrypt(viaPgBouncer(row.dbUrl), ctx.env.config.encryptionKeys) })
    .where(eq(tenants.id, t.id))
  await services().catalog.invalidate(t.id)
  console_ = pgbouncerConsole()
})
afterAll(async () => {
  await console_?.end()
})

const clientsOn = async (database: string) =>
  (await console_.unsafe<{ database: string; application_name: string }[]>('show clients')).filter((r) => r.database === database)

describe.skipIf(unavailable)('a tenant behind PgBouncer, over HTTP', () => {
  it('serves requests’ writes and reads through PgBouncer', async () => {
    const row = (await services().catalog.get(t.id))!
    expect(row.poolerUrl).toBe(viaPgBouncer(row.dbUrl))
    const made = await Promise.all(Array.from({ length: 10 }, (_, i) => t.as(t.editor).post('/projects', { name: `via pooler ${i}` })))
    for (const res of made) expect(res.statusCode, res.body).toBe(201)
    const one = await t.as(t.viewer).get(`/projects/${made[3]!.json().id}`)
    expect(one.statusCode, one.body).toBe(200)
    expect(one.json().name).toBe('via pooler 3')
    const list = await t.as(t.viewer).get('/projects?limit=100')
    expect(list.statusCode).toBe(200)
    expect(list.json().items).toHaveLength(11)
    expect((await clientsOn(t.tenant.dbName)).length).toBeGreaterThan(0)
  })

  it('moves (database → shared) under continuous reads: every read answered, the pooler URL cleared', async () => {
    // One project read all along (the writer below adds others).
    const path = `/projects/${t.projectId}`
    const before = await t.as(t.viewer).get(path)
    expect(before.statusCode, before.body).toBe(200)
    const readers = continuousReads(() => t.as(t.viewer).get(path), before)
    // A writer all along: the span between its first and last refused write is the pause users see.
    let writing = true
    const refused: number[] = []
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const res = await t.as(t.editor).post('/projects', { name: `during ${i}` })
        if (res.statusCode !== 201) {
          expect(res.json()).toMatchObject({ statusCode: 503, code: 'TENANT_MOVING' })
          refused.push(performance.now())
        }
        await new Promise((r) => setTimeout(r, 50))
      }
    })()
    let move: Awaited<ReturnType<ReturnType<typeof services>['mover']['moveTenant']>>
    let tally: Awaited<ReturnType<typeof readers.stop>>
    try {
      await new Promise((r) => setTimeout(r, 200))
      move = await services().mover.moveTenant(t.slug, { target: { isolation: 'shared' } })
      await new Promise((r) => setTimeout(r, 200))
    } finally {
      tally = await readers.stop()
      writing = false
      await writer
    }
    const f = moveFigures(move)
    const pausedMs = refused.length ? Math.round(refused.at(-1)! - refused[0]!) : 0
    console.log(
      `move behind PgBouncer under read load: ${tally.reads} reads, ${tally.failed} failed; ${f.rows} rows, writes refused for ${pausedMs} ms (${refused.length} refused; writePauseMs ${f.writePauseMs}), ${f.totalMs} ms in all`,
    )
    expect(move).toMatchObject({ state: 'done', fromIsolation: 'database', toIsolation: 'shared', error: null })
    expect(tally.failed, JSON.stringify(tally.statuses)).toBe(0)
    // Writes refused for about as long as a direct move (~1 s), not the drain's 10 s timeout: PgBouncer's idle
    // server connections to the old database are ended at once rather than waited for (drain.ts, pooled).
    expect(refused.length).toBeGreaterThan(0)
    expect(pausedMs).toBeLessThan(8000)
    const after = (await services().catalog.get(t.id))!
    expect(after).toMatchObject({ isolation: 'shared', poolerUrl: undefined })
    const write = await t.as(t.editor).post('/projects', { name: 'after the move' })
    expect(write.statusCode, write.body).toBe(201)
  }, 60_000)
})
