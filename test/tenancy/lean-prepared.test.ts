/**
 * lean() (src/core/tenancy/prepared.ts): a prepared single-table select run straight on its handle's client
 * must answer exactly as drizzle's own execute (rows, nulls, decoded timestamps, errors) for a database
 * tenant and a shared tenant, keep the shared tenant's scope, and hand anything it doesn't cover back to drizzle.
 */
import { DrizzleQueryError, eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects, tenantUsers } from '../../drizzle/tenant/schema.js'
import { lean } from '../../src/core/tenancy/prepared.js'
import type { TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { type SharedWorld, sharedWorld } from '../helpers/shared-world.js'

let world: SharedWorld
const tenants: Record<'database' | 'shared', TenantRecord[]> = { database: [], shared: [] }

const byId = (db: TenantDb) => db.select().from(projects).where(eq(projects.id, sql.placeholder('id'))).prepare('lean_test_projects_by_id')
const as = <T>(t: TenantRecord, fn: (db: TenantDb) => Promise<T>) => world.as(t, fn)

beforeAll(async () => {
  world = await sharedWorld({ 'lean-database-1': 'database', 'lean-database-2': 'database', 'lean-shared-1': 'shared', 'lean-shared-2': 'shared' })
  for (const t of Object.values(world.tenants)) tenants[t.isolation as 'database' | 'shared'].push(t)
})
afterAll(async () => {
  await world?.close()
})

describe.each(['database', 'shared'] as const)('lean() on a %s tenant', (isolation) => {
  it('answers as drizzle does: the row with its nulls and timestamps, and nothing for a missing id', async () => {
    const [t] = tenants[isolation]
    await as(t!, async (db) => {
      const [creator] = await db.select({ id: tenantUsers.id }).from(tenantUsers).limit(1)
      const [p] = await db.insert(projects).values({ name: 'lean', createdBy: creator!.id }).returning()
      const prepared = byId(db)
      const fast = lean(prepared)
      expect(fast).not.toBe(prepared) // the lean path, not the fallback
      const rows = await fast.execute({ id: p!.id })
      expect(rows).toEqual(await prepared.execute({ id: p!.id }))
      expect(rows[0]!.description).toBeNull()
      expect(rows[0]!.createdAt).toBeInstanceOf(Date)
      expect(await fast.execute({ id: '00000000-0000-7000-8000-000000000000' })).toEqual([])
    })
  })

  it('fails as drizzle does: a DrizzleQueryError around the database error, and a missing placeholder', async () => {
    const [t] = tenants[isolation]
    await as(t!, async (db) => {
      const prepared = byId(db)
      const drizzleErr = await prepared.execute({ id: 'not-a-uuid' }).catch((e: unknown) => e)
      const leanErr = await lean(prepared).execute({ id: 'not-a-uuid' }).catch((e: unknown) => e)
      expect(leanErr).toBeInstanceOf(DrizzleQueryError)
      expect((leanErr as DrizzleQueryError).cause).toMatchObject({ code: '22P02' })
      expect((leanErr as Error).message).toBe((drizzleErr as Error).message)
      await expect(lean(prepared).execute({})).rejects.toThrow('No value for placeholder "id" was provided')
    })
  })
})

it("keeps a shared tenant's scope: another shared tenant's row is not found", async () => {
  const [a, b] = tenants.shared
  const id = await as(b!, async (db) => {
    const [creator] = await db.select({ id: tenantUsers.id }).from(tenantUsers).limit(1)
    return (await db.insert(projects).values({ name: 'only b', createdBy: creator!.id }).returning())[0]!.id
  })
  expect(await as(a!, (db) => lean(byId(db)).execute({ id }))).toEqual([])
  expect(await as(b!, (db) => lean(byId(db)).execute({ id }))).toHaveLength(1)
})

it('hands back what it does not cover: nested selections and joins run through drizzle', async () => {
  const [t] = tenants.database
  await as(t!, async (db) => {
    const nested = db
      .select({ p: { id: projects.id } })
      .from(projects)
      .where(eq(projects.id, sql.placeholder('id')))
      .prepare('lean_test_nested')
    expect(lean(nested)).toBe(nested)
    const joined = db
      .select()
      .from(projects)
      .innerJoin(tenantUsers, eq(tenantUsers.id, projects.createdBy))
      .where(eq(projects.id, sql.placeholder('id')))
      .prepare('lean_test_joined')
    expect(lean(joined)).toBe(joined)
  })
})
