/**
 * mapAndUpsert against a real Postgres table: renames, flattening, casts with row numbers in every
 * rejection, COPY through a staging table, one merge, and nothing half-written when the merge fails.
 */
import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import { boolean, date, integer, jsonb, numeric, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { castValue, flatten, mapAndUpsert } from '../../src/core/data/map-and-upsert.js'
import { ADMIN_URL, uniqueName } from '../helpers/env.js'

const customers = pgTable(
  'customers',
  {
    id: uuid('id')
      .primaryKey()
      .$defaultFn(() => uuidv7()),
    externalId: text('external_id').notNull(),
    name: text('name').notNull(),
    addressCity: text('address_city'),
    addressZip: text('address_zip'),
    visits: integer('visits').notNull().default(0),
    balance: numeric('balance'),
    vip: boolean('vip'),
    birthday: date('birthday'),
    lastSeen: timestamp('last_seen', { withTimezone: true }),
    tags: jsonb('tags'),
    tier: text('tier', { enum: ['free', 'pro'] }),
    updatedAt: timestamp('updated_at', { withTimezone: true })
      .notNull()
      .defaultNow()
      .$onUpdate(() => sql`now()`),
  },
  (t) => [uniqueIndex('customers_external_uq').on(t.externalId)],
)

const dbName = uniqueName('map')
let admin: postgres.Sql
let client: postgres.Sql
const db = () => drizzle(client)

beforeAll(async () => {
  admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${dbName}`)
  client = connect(withDatabase(ADMIN_URL, dbName), { max: 4 })
  await client.unsafe(`create table customers (
    id uuid primary key, external_id text not null, name text not null, address_city text, address_zip text,
    visits integer not null default 0, balance numeric, vip boolean, birthday date, last_seen timestamptz, tags jsonb,
    tier text check (tier in ('free','pro')), updated_at timestamptz not null default now());
    create unique index customers_external_uq on customers (external_id);`)
})
afterAll(async () => {
  await client?.end()
  await admin?.unsafe(`drop database if exists ${dbName} with (force)`)
  await admin?.end()
})
beforeEach(async () => {
  await client`truncate customers`
})

const source = (i: number) => ({
  ext: `c${i}`,
  fullName: `Customer ${i}`,
  address: { city: 'Oslo', zip: `0${i}` },
  visits: String(i),
  balance: '12.50',
  vip: i % 2 === 0 ? 'yes' : 'false',
  birthday: '1990-02-28',
  lastSeen: '2026-01-02T03:04:05.678Z',
  tags: ['a', 'b'],
  tier: 'pro',
})
const columnMap = { ext: 'external_id', fullName: 'name', lastSeen: 'last_seen' }

describe('mapAndUpsert', () => {
  it('renames, flattens and casts every field, then inserts and updates by key', async () => {
    const first = await mapAndUpsert(db(), { rows: [source(1), source(2)], table: customers, key: customers.externalId, columnMap })
    expect(first).toMatchObject({ inserted: 2, updated: 0, rejected: 0, duplicates: 0, rejectedRows: [], ignoredFields: [] })
    const [row] = await client`select * from customers where external_id = 'c2'`
    expect(row).toMatchObject({ name: 'Customer 2', address_city: 'Oslo', address_zip: '02', visits: 2, balance: '12.50', vip: true, tags: ['a', 'b'], tier: 'pro' })
    expect(new Date(row!.last_seen).toISOString()).toBe('2026-01-02T03:04:05.678Z')
    const second = await mapAndUpsert(db(), { rows: [{ ...source(2), fullName: 'Renamed' }, source(3)], table: customers, key: customers.externalId, columnMap })
    expect(second).toMatchObject({ inserted: 1, updated: 1, rejected: 0 })
    const [renamed] = await client`select id, name, updated_at from customers where external_id = 'c2'`
    expect(renamed).toMatchObject({ id: row!.id, name: 'Renamed' }) // same row: the key matched
  })

  it('returns every rejected row with its row number, field and reason, and loads the rest', async () => {
    const rows = [
      source(1),
      { ...source(2), visits: 'many' },
      { ...source(3), birthday: '2023-02-30' },
      { ...source(4), vip: 'perhaps' },
      { ...source(5), ext: null },
      { ...source(6), fullName: undefined },
      { ...source(7), tier: 'gold' },
      { ...source(8), lastSeen: 'yesterday' },
      'not a row' as never,
      { ...source(10), balance: '1e3' },
    ]
    const result = await mapAndUpsert(db(), { rows, table: customers, key: customers.externalId, columnMap })
    expect(result.inserted).toBe(2)
    expect(result.rejected).toBe(8)
    expect(result.rejectedRows).toEqual([
      { row: 2, field: 'visits', reason: expect.stringContaining('not an integer') },
      { row: 3, field: 'birthday', reason: expect.stringContaining('not a date') },
      { row: 4, field: 'vip', reason: expect.stringContaining('not a boolean') },
      { row: 5, field: 'externalId', reason: 'the key is missing' },
      { row: 6, field: 'name', reason: 'is required' },
      { row: 7, field: 'tier', reason: expect.stringContaining('one of free, pro') },
      { row: 8, field: 'lastSeen', reason: expect.stringContaining('not a date-time') },
      { row: 9, reason: 'not an object' },
    ])
  })

  it('lets the last row of a duplicated key win and counts the others', async () => {
    const result = await mapAndUpsert(db(), { rows: [source(1), { ...source(1), fullName: 'Later' }, source(2)], table: customers, key: customers.externalId, columnMap })
    expect(result).toMatchObject({ inserted: 2, duplicates: 1 })
    const [row] = await client`select name from customers where external_id = 'c1'`
    expect(row!.name).toBe('Later')
  })

  it('streams an async source of 50,000 rows with text that needs COPY escaping', async () => {
    async function* rows() {
      for (let i = 0; i < 50_000; i++) yield { ext: `s${i}`, fullName: `tab\there\nnew\\line ${i}` }
    }
    const result = await mapAndUpsert(db(), { rows: rows(), table: customers, key: customers.externalId, columnMap })
    expect(result).toMatchObject({ inserted: 50_000, rejected: 0 })
    const [row] = await client`select name from customers where external_id = 's49999'`
    expect(row!.name).toBe('tab\there\nnew\\line 49999')
  })

  it('lists fields that match no column, and refuses a map naming a missing column before reading', async () => {
    const result = await mapAndUpsert(db(), { rows: [{ ...source(1), shoeSize: 44 }], table: customers, key: customers.externalId, columnMap })
    expect(result.ignoredFields).toEqual(['shoeSize'])
    await expect(mapAndUpsert(db(), { rows: [source(1)], table: customers, columnMap: { ext: 'nope' } })).rejects.toMatchObject({ code: 'INVALID_ROWS', statusCode: 400 })
  })

  it('writes nothing when the merge fails (one transaction)', async () => {
    await client`alter table customers add constraint visits_small check (visits < 5)`
    try {
      await expect(mapAndUpsert(db(), { rows: [source(1), source(9)], table: customers, key: customers.externalId, columnMap })).rejects.toThrow()
      expect((await client`select count(*)::int as n from customers`)[0]!.n).toBe(0)
    } finally {
      await client`alter table customers drop constraint visits_small`
    }
  })

  it('fills columns a row lacks from defaults, and rolls the whole load back when beforeCommit throws', async () => {
    const result = await mapAndUpsert(db(), { rows: [{ ext: 'd1' }], table: customers, key: customers.externalId, columnMap, defaults: { name: 'Unnamed', visits: 7 } })
    expect(result.inserted).toBe(1)
    expect((await client`select name, visits from customers where external_id = 'd1'`)[0]).toEqual({ name: 'Unnamed', visits: 7 })
    await expect(
      mapAndUpsert(db(), {
        rows: [source(1), source(2)],
        table: customers,
        key: customers.externalId,
        columnMap,
        beforeCommit: async (tx) => {
          const [row] = await tx<{ n: number }[]>`select count(*)::int as n from customers`
          const n = row!.n
          if (n > 2) throw new Error(`over the limit: ${n}`)
        },
      }),
    ).rejects.toThrow('over the limit: 3')
    expect((await client`select count(*)::int as n from customers`)[0]!.n).toBe(1)
  })

  it('keeps stored values a row leaves out on an update, takes defaults on an insert, and refuses an explicit null for a NOT NULL column', async () => {
    await mapAndUpsert(db(), { rows: [{ ...source(1), visits: 5 }], table: customers, key: customers.externalId, columnMap })
    const result = await mapAndUpsert(db(), {
      rows: [{ ext: 'c1', vip: false }, { ext: 'c2', fullName: 'New' }, { ext: 'c3', fullName: null }, { ext: 'c4' }],
      table: customers,
      key: customers.externalId,
      columnMap,
      columns: ['name', 'visits', 'address_city'],
    })
    expect(result).toMatchObject({ inserted: 1, updated: 1, rejected: 2 })
    expect(result.rejectedRows).toEqual([
      { row: 3, field: 'name', reason: 'must not be null' },
      { row: 4, field: 'name', reason: 'is required' }, // a new row: nothing to keep
    ])
    const [kept] = await client`select name, visits, vip, address_city from customers where external_id = 'c1'`
    expect(kept).toEqual({ name: 'Customer 1', visits: 5, vip: false, address_city: 'Oslo' })
    const [fresh] = await client`select name, visits, address_city from customers where external_id = 'c2'`
    expect(fresh).toEqual({ name: 'New', visits: 0, address_city: null }) // visits: the column's default
  })

  it('does nothing for an empty source', async () => {
    expect(await mapAndUpsert(db(), { rows: [], table: customers })).toMatchObject({ inserted: 0, updated: 0, rejected: 0 })
  })
})

describe('castValue and flatten', () => {
  it('casts what the seed’s apply_schema does, naming the field on failure', () => {
    expect(castValue('TRUE', 'boolean', 'f')).toBe('t')
    expect(castValue(0, 'boolean', 'f')).toBe('f')
    expect(castValue('2024-02-29', 'date', 'f')).toBe('2024-02-29')
    expect(castValue(0, 'datetime', 'f')).toBe('1970-01-01T00:00:00.000Z')
    expect(castValue('', 'integer', 'f')).toBeNull()
    expect(castValue(' -12 ', 'integer', 'f')).toBe('-12')
    expect(() => castValue('1.5', 'integer', 'qty')).toThrow(/not an integer/)
    expect(() => castValue({}, 'text', 'name')).toThrow(/not text/)
    expect(() => castValue('2023-13-01', 'date', 'd')).toThrow(/not a date/)
  })
  it('flattens the nested objects named, or all of them', () => {
    expect(flatten({ a: { b: 1, c: { d: 2 } }, e: [1], f: { g: 3 } }, ['a'])).toEqual({ a_b: 1, a_c_d: 2, e: [1], f: { g: 3 } })
    expect(flatten({ a: { b: 1 }, f: { g: 3 } })).toEqual({ a_b: 1, f_g: 3 })
  })
})
