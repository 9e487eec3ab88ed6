/**
 * The data helpers on shared tenants' handles (issue 14's shared layout): the same calls as on a database
 * tenant, with unique keys that lead with tenant_id. Two tenants load rows with the same ids: each sees
 * and updates only its own, and the database stamps tenant_id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects, tenantUsers } from '../../drizzle/tenant/schema.js'
import type { Sql } from '../../src/core/db/connect.js'
import { mapAndUpsert } from '../../src/core/data/map-and-upsert.js'
import { paginateCursor } from '../../src/core/data/pagination.js'
import { bulkInsertOnly, bulkUpsert, getById, withTransaction } from '../../src/core/data/table-helpers.js'
import { isSharedTenantDb } from '../../src/core/tenancy/shared/scoped-client.js'
import type { TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { type SharedWorld, sharedWorld } from '../helpers/shared-world.js'

let world: SharedWorld
let truth: Sql
let A: TenantRecord
let B: TenantRecord
let owner: string
const as = <T>(t: TenantRecord, fn: (db: TenantDb) => Promise<T>) => world.as(t, fn)

beforeAll(async () => {
  world = await sharedWorld({ 'data-a': 'shared', 'data-b': 'shared' })
  ;({ truth, owner } = world)
  A = world.tenants['data-a']!
  B = world.tenants['data-b']!
})
afterAll(async () => {
  await world?.close()
})

describe('data helpers on shared tenants', () => {
  it('knows a shared handle and its transactions', async () => {
    await as(A, async (db) => {
      expect(isSharedTenantDb(db)).toBe(true)
      await db.transaction(async (tx) => expect(isSharedTenantDb(tx)).toBe(true))
    })
  })

  it('bulkUpsert and mapAndUpsert keep each tenant to its own rows, on the primary key and on a natural key', async () => {
    const rowsOf = (t: TenantRecord) => [0, 1].map((i) => ({ id: `01900000-0000-7000-8000-00000000000${t === A ? i : i + 2}`, name: `${t.slug} p${i}`, createdBy: owner }))
    for (const t of [A, B]) {
      const rows = rowsOf(t)
      await as(t, (db) => bulkInsertOnly(db, projects, rows))
      expect(await as(t, (db) => bulkUpsert(db, projects, [{ ...rows[0]!, name: `${t.slug} renamed` }]))).toMatchObject({ inserted: 0, updated: 1 })
    }
    const [a0, a1] = rowsOf(A)
    const result = await as(A, (db) =>
      mapAndUpsert(db, { rows: [{ id: a1!.id, name: 'mapped' }, { name: 'new one' }], table: projects, key: projects.id, defaults: { createdBy: owner } }),
    )
    expect(result).toMatchObject({ inserted: 1, updated: 1, rejected: 0 })
    expect((await as(A, (db) => getById(db, projects, a0!.id)))!.name).toBe('data-a renamed')
    expect(await as(B, (db) => getById(db, projects, a0!.id))).toBeUndefined() // A's row is invisible to B
    const byTenant = await truth<{ tenant_id: string; n: number }[]>`select tenant_id, count(*)::int as n from projects group by tenant_id order by n`
    expect(byTenant).toEqual([
      { tenant_id: B.id, n: 2 },
      { tenant_id: A.id, n: 3 },
    ])
    const page = await as(B, (db) => paginateCursor(db, projects, { limit: 10 }))
    expect(page.items.map((p) => p.name).sort()).toEqual(['data-b p1', 'data-b renamed'])

    // core_tenant_users is unique on global_user_id per tenant: the owner is a row in both tenants.
    for (const t of [A, B]) {
      const up = await as(t, (db) => bulkUpsert(db, tenantUsers, [{ globalUserId: owner, email: 'o@example.com', name: `owner of ${t.slug}` }], { key: tenantUsers.globalUserId }))
      expect(up).toMatchObject({ inserted: 0, updated: 1 })
      const loaded = await as(t, (db) => mapAndUpsert(db, { rows: [{ globalUserId: owner, email: 'o@example.com', name: `mapped ${t.slug}` }], table: tenantUsers, key: tenantUsers.globalUserId }))
      expect(loaded).toMatchObject({ inserted: 0, updated: 1 })
    }
    const names = await truth<{ name: string }[]>`select name from core_tenant_users where global_user_id = ${owner} order by name`
    expect(names.map((n) => n.name)).toEqual(['mapped data-a', 'mapped data-b'])

    await as(A, (db) =>
      withTransaction(db, async (tx) => {
        expect((await bulkUpsert(tx, projects, [{ ...a0!, name: 'in tx' }])).updated).toBe(1)
      }),
    )
    expect((await as(A, (db) => getById(db, projects, a0!.id)))!.name).toBe('in tx')
  })
})
