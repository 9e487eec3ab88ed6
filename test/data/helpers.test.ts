/**
 * The data helpers (src/core/data, src/core/lib/money.ts) against a real Postgres database of their own:
 * typed CRUD, bulk statements past the 65,535-parameter limit, pagination, batches, named queries, money.
 */
import { drizzle } from 'drizzle-orm/postgres-js'
import { sql } from 'drizzle-orm'
import { boolean, date, integer, jsonb, numeric, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { Type } from 'typebox'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { batchExecute } from '../../src/core/data/batch.js'
import { defineQueries, namedQuery, parsePlaceholders, runNamed, validateParams } from '../../src/core/data/named-queries.js'
import { paginateCursor, paginateOffset } from '../../src/core/data/pagination.js'
import {
  bulkDelete,
  bulkInsertOnly,
  bulkUpsert,
  deleteById,
  getById,
  insertOnly,
  updateById,
  upsert,
  withTransaction,
} from '../../src/core/data/table-helpers.js'
import { fromCents, minorUnits, toCents } from '../../src/core/lib/money.js'
import { ADMIN_URL, uniqueName } from '../helpers/env.js'

const items = pgTable(
  'items',
  {
    id: uuid('id')
      .primaryKey()
      .$defaultFn(() => uuidv7()),
    sku: text('sku').notNull(),
    name: text('name').notNull(),
    qty: integer('qty').notNull().default(0),
    price: numeric('price'),
    active: boolean('active').notNull().default(true),
    released: date('released'),
    seenAt: timestamp('seen_at', { withTimezone: true }),
    meta: jsonb('meta'),
    status: text('status', { enum: ['new', 'old'] }),
    updatedAt: timestamp('updated_at', { withTimezone: true })
      .notNull()
      .defaultNow()
      .$onUpdate(() => sql`now()`),
  },
  (t) => [uniqueIndex('items_sku_uq').on(t.sku)],
)

const CREATE = `create table items (
  id uuid primary key, sku text not null, name text not null, qty integer not null default 0, price numeric,
  active boolean not null default true, released date, seen_at timestamptz, meta jsonb, status text check (status in ('new','old')),
  updated_at timestamptz not null default now());
  create unique index items_sku_uq on items (sku);`

const dbName = uniqueName('data')
let admin: postgres.Sql
let client: postgres.Sql
let db: ReturnType<typeof drizzle<Record<string, never>>>

beforeAll(async () => {
  admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${dbName}`)
  client = connect(withDatabase(ADMIN_URL, dbName), { max: 4 })
  db = drizzle(client)
  await client.unsafe(CREATE)
})
afterAll(async () => {
  await client?.end()
  await admin?.unsafe(`drop database if exists ${dbName} with (force)`)
  await admin?.end()
})
beforeEach(async () => {
  await client`truncate items`
})

const count = async (where = '') => (await client.unsafe<{ n: number }[]>(`select count(*)::int as n from items ${where}`))[0]!.n
const row = (i: number) => ({ sku: `sku-${String(i).padStart(6, '0')}`, name: `Item ${i}`, qty: i })

describe('insertOnly / bulkInsertOnly', () => {
  it('inserts once and skips a conflicting row, returning only what was inserted', async () => {
    const first = await insertOnly(db, items, row(1))
    expect(first).toMatchObject({ sku: 'sku-000001', qty: 1, active: true })
    expect(await insertOnly(db, items, { ...row(1), name: 'other' })).toBeUndefined()
    expect((await getById(db, items, first!.id))!.name).toBe('Item 1')
    const inserted = await bulkInsertOnly(db, items, [row(1), row(2), row(3)], { target: items.sku })
    expect(inserted.map((r) => r.sku)).toEqual(['sku-000002', 'sku-000003'])
  })
  it('splits a load past 65,535 parameters into several statements', async () => {
    // 11 columns × 20,000 rows = 220,000 parameters: one statement would be refused by Postgres.
    const rows = Array.from({ length: 20_000 }, (_, i) => row(i))
    expect((await bulkInsertOnly(db, items, rows)).length).toBe(20_000)
    expect(await count()).toBe(20_000)
  })
  it('refuses a row with a missing required column (no half-written load)', async () => {
    await expect(bulkInsertOnly(db, items, [row(1), { sku: 'x' } as never])).rejects.toThrow()
    expect(await count()).toBe(0)
  })
})

describe('upsert / bulkUpsert', () => {
  it('inserts new keys and updates the given columns of existing ones, counting each', async () => {
    const before = await upsert(db, items, { ...row(1), price: '9.99' }, { key: items.sku })
    const result = await bulkUpsert(db, items, [{ ...row(1), name: 'renamed' }, row(2)], { key: items.sku })
    expect(result.inserted).toBe(1)
    expect(result.updated).toBe(1)
    const after = await getById(db, items, before.id)
    expect(after).toMatchObject({ name: 'renamed', price: '9.99' }) // price not given: kept
    expect(after!.id).toBe(before.id) // the key matched; the new id proposed was not taken
    expect(after!.updatedAt.getTime()).toBeGreaterThanOrEqual(before.updatedAt.getTime())
  })
  it('upserts 30,000 rows in chunks and reports them all', async () => {
    await bulkInsertOnly(db, items, Array.from({ length: 10_000 }, (_, i) => row(i)))
    const result = await bulkUpsert(db, items, Array.from({ length: 30_000 }, (_, i) => ({ ...row(i), qty: -i })), { key: items.sku })
    expect(result).toMatchObject({ inserted: 20_000, updated: 10_000 })
    expect(await count('where qty <= 0')).toBe(30_000)
  })
  it('refuses a row naming a column the table lacks', async () => {
    await expect(bulkUpsert(db, items, [{ ...row(1), nope: 1 } as never], { key: items.sku })).rejects.toMatchObject({ code: 'INVALID_ROWS' })
  })
})

describe('getById / updateById / deleteById / bulkDelete', () => {
  it('round-trips one row and deletes many', async () => {
    const rows = await bulkInsertOnly(db, items, Array.from({ length: 10 }, (_, i) => row(i)))
    const one = rows[0]!
    expect(await updateById(db, items, one.id, { name: 'new' })).toMatchObject({ id: one.id, name: 'new' })
    expect(await updateById(db, items, uuidv7(), { name: 'x' })).toBeUndefined()
    await expect(updateById(db, items, one.id, {})).rejects.toMatchObject({ code: 'INVALID_ROWS' })
    expect(await deleteById(db, items, one.id)).toBe(true)
    expect(await deleteById(db, items, one.id)).toBe(false)
    expect(await getById(db, items, one.id)).toBeUndefined()
    expect(await bulkDelete(db, items, rows.slice(1, 6).map((r) => r.id))).toBe(5)
    expect(await bulkDelete(db, items, [])).toBe(0)
    expect(await getById(db, items, 'sku-000009', { key: items.sku })).toMatchObject({ qty: 9 })
  })
})

describe('withTransaction', () => {
  it('commits all or nothing', async () => {
    await expect(
      withTransaction(db, async (tx) => {
        await insertOnly(tx, items, row(1))
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await getById(db, items, 'sku-000001', { key: items.sku })).toBeUndefined()
  })
  it('runs a serializable transaction again after a serialization failure', async () => {
    await insertOnly(db, items, row(1))
    let attempts = 0
    const other = drizzle(client)
    await withTransaction(
      db,
      async (tx) => {
        attempts++
        const [current] = await tx.select().from(items)
        if (attempts === 1) await other.update(items).set({ qty: 100 }) // a concurrent committed write
        await tx.update(items).set({ qty: current!.qty + 1 })
      },
      { isolationLevel: 'serializable', retries: 2 },
    )
    expect(attempts).toBe(2)
    expect((await getById(db, items, 'sku-000001', { key: items.sku }))!.qty).toBe(101)
  })
})

describe('pagination', () => {
  beforeEach(async () => {
    await bulkInsertOnly(db, items, Array.from({ length: 25 }, (_, i) => ({ ...row(i), qty: i % 3 })))
  })
  it('offset pages know whether there is a next page and refuse bad input', async () => {
    const page = await paginateOffset(db.select().from(items).orderBy(items.sku).$dynamic(), { page: 3, pageSize: 10 })
    expect(page.items.map((r) => r.qty)).toHaveLength(5)
    expect(page.hasMore).toBe(false)
    expect((await paginateOffset(db.select().from(items).orderBy(items.sku).$dynamic(), { page: 1, pageSize: 10 })).hasMore).toBe(true)
    await expect(paginateOffset(db.select().from(items).$dynamic(), { page: 0 })).rejects.toMatchObject({ statusCode: 400 })
  })
  it('keyset pages walk every row once on a sort column with ties, and refuse a tampered cursor', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page: Awaited<ReturnType<typeof paginateCursor<typeof items>>> = await paginateCursor(db, items, { sort: items.qty, direction: 'desc', limit: 4, cursor })
      seen.push(...page.items.map((r) => r.sku))
      cursor = page.nextCursor
    } while (cursor)
    expect(seen).toHaveLength(25)
    expect(new Set(seen).size).toBe(25)
    await expect(paginateCursor(db, items, { cursor: 'not-a-cursor' })).rejects.toMatchObject({ code: 'INVALID_CURSOR' })
    await expect(paginateCursor(db, items, { limit: 0 })).rejects.toMatchObject({ statusCode: 400 })
  })
  it('keeps microseconds of a timestamp sort column (no repeated row across pages)', async () => {
    await client`update items set seen_at = '2026-01-01 00:00:00.000001+00'::timestamptz + (qty || ' microseconds')::interval`
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page: Awaited<ReturnType<typeof paginateCursor<typeof items>>> = await paginateCursor(db, items, { sort: items.seenAt, limit: 3, cursor })
      seen.push(...page.items.map((r) => r.sku))
      cursor = page.nextCursor
    } while (cursor)
    expect(new Set(seen).size).toBe(25)
    expect(seen).toHaveLength(25)
  })
})

describe('batchExecute', () => {
  it('commits each batch and reports progress; a failing batch loses only itself', async () => {
    const progress: number[] = []
    const all = Array.from({ length: 2_500 }, (_, i) => row(i))
    const done = await batchExecute(db, all, (batch, tx) => bulkInsertOnly(tx, items, batch), { batchSize: 1000, onProgress: (p) => void progress.push(p.done) })
    expect(done).toMatchObject({ done: 2_500, batches: 3, total: 2_500 })
    expect(progress).toEqual([1000, 2000, 2500])
    await client`truncate items`
    async function* stream() {
      for (let i = 0; i < 30; i++) yield i === 25 ? ({ sku: null } as never) : row(i)
    }
    await expect(batchExecute(db, stream(), (batch, tx) => bulkInsertOnly(tx, items, batch), { batchSize: 10 })).rejects.toThrow()
    expect(await count()).toBe(20) // the two batches before the bad one are committed
    await expect(batchExecute(db, [], async () => {}, { batchSize: 0 })).rejects.toMatchObject({ code: 'INVALID_ROWS' })
  })
})

describe('named queries', () => {
  const queries = defineQueries({
    bySkuPrefix: namedQuery<{ sku: string; qty: number }>()(
      `select sku, qty from items -- :notAParam in a comment
       where sku like :prefix || '%' and name <> ':literal' and qty::int >= :minQty order by sku limit :limit`,
      Type.Object({ prefix: Type.String({ maxLength: 20 }), minQty: Type.Integer(), limit: Type.Integer({ minimum: 1, maximum: 100 }) }),
    ),
  })
  it('binds placeholders as parameters (an injection attempt is just a value)', async () => {
    await bulkInsertOnly(db, items, Array.from({ length: 5 }, (_, i) => row(i)))
    const rows = await runNamed(db, queries, 'bySkuPrefix', { prefix: 'sku-00000', minQty: 2, limit: 10 })
    expect(rows.map((r) => r.sku)).toEqual(['sku-000002', 'sku-000003', 'sku-000004'])
    expect(await runNamed(db, queries, 'bySkuPrefix', { prefix: "x' or 1=1 --", minQty: 0, limit: 10 })).toEqual([])
  })
  it('refuses unknown ids and bad parameters before Postgres sees them', async () => {
    await expect(runNamed(db, queries, 'nope' as 'bySkuPrefix', { prefix: 'a', minQty: 0, limit: 1 })).rejects.toMatchObject({ code: 'UNKNOWN_QUERY', statusCode: 404 })
    await expect(runNamed(db, queries, 'bySkuPrefix', { prefix: 'a', minQty: 0 } as never)).rejects.toMatchObject({ code: 'INVALID_QUERY_PARAMS', statusCode: 400 })
    await expect(runNamed(db, queries, 'bySkuPrefix', { prefix: 'a', minQty: 0, limit: 1, extra: 1 } as never)).rejects.toMatchObject({ code: 'INVALID_QUERY_PARAMS' })
    expect(validateParams(queries.bySkuPrefix, { prefix: 'a', minQty: 'x', limit: 1 })).not.toEqual([])
  })
  it('finds a placeholder without a schema, or a schema property never used, at definition', () => {
    expect(() => namedQuery()('select :a', Type.Object({}))).toThrow(/placeholders without a schema: \[a\]/)
    expect(() => namedQuery()('select 1', Type.Object({ b: Type.String() }))).toThrow(/unused: \[b\]/)
    expect(parsePlaceholders(`select '::x', ":y", 1::int, :z /* :w */`).names).toEqual(['z'])
  })
})

describe('money', () => {
  it('converts amounts to integer minor units and back', () => {
    expect(toCents('$1,150.00')).toBe(115000)
    expect(toCents('1150')).toBe(115000)
    expect(toCents('-$5.25')).toBe(-525)
    expect(toCents('($5.25)')).toBe(-525)
    expect(toCents('USD 12.5')).toBe(1250)
    expect(toCents(19.99)).toBe(1999)
    expect(toCents('¥1,000', { currency: 'JPY' })).toBe(1000)
    expect(toCents('1.234', { currency: 'KWD' })).toBe(1234)
    expect(minorUnits('jpy')).toBe(0)
    expect(fromCents(115000)).toBe('$1,150.00')
    expect(fromCents(-525)).toBe('-$5.25')
    expect(fromCents(115000, { currency: 'EUR', locale: 'de-DE' })).toBe('1.150,00\u00a0€')
    expect(fromCents(1000, { currency: 'JPY', locale: 'en-US' })).toBe('¥1,000')
  })
  it.each([
    ['', 'empty'],
    ['12abc', 'letters'],
    ['1.2.3', 'two points'],
    ['1,15.00', 'bad grouping'],
    ['1.005', 'too many decimals'],
    ['--5', 'double sign'],
    ['(-5)', 'double negative'],
    ['99999999999999999', 'past safe integers'],
  ])('refuses %j (%s) with INVALID_MONEY', (input) => {
    expect(() => toCents(input)).toThrow(expect.objectContaining({ code: 'INVALID_MONEY', statusCode: 400 }))
  })
  it('refuses non-finite numbers, fractional cents, unknown currencies', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 1.005]) expect(() => toCents(bad)).toThrow(expect.objectContaining({ code: 'INVALID_MONEY' }))
    expect(() => toCents('1', { currency: 'US' })).toThrow(expect.objectContaining({ code: 'INVALID_MONEY' }))
    expect(() => fromCents(1.5)).toThrow(expect.objectContaining({ code: 'INVALID_MONEY' }))
    expect(() => toCents(null as never)).toThrow(expect.objectContaining({ code: 'INVALID_MONEY' }))
  })
})
