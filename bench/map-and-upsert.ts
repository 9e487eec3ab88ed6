/**
 * The JSON → table mapper (issue 15): 100,000 rows of 20 columns loaded into a real table by
 * mapAndUpsert (cast in JS, COPY into a staging table, one merge) and, in the same run, by bulkUpsert
 * (multi-row INSERT … ON CONFLICT statements under the 65,535-parameter limit). Each is run as a fresh
 * insert and as an update of every row; rounds alternate so machine noise hits both alike.
 *
 *   npm run bench:mapper      (BENCH_ROWS, default 100000; BENCH_ROUNDS, default 3)
 *
 * Prints rows/s per subject and phase (medians), the ratio mapper / bulkUpsert, and the peak RSS growth
 * while the mapper streams rows from an async generator (flat: rows are never all in memory).
 */
import { drizzle } from 'drizzle-orm/postgres-js'
import { integer, numeric, pgTable, text, timestamp, boolean as pgBoolean, date } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { connect, withDatabase } from '../src/core/db/connect.js'
import { mapAndUpsert } from '../src/core/data/map-and-upsert.js'
import { bulkUpsert } from '../src/core/data/table-helpers.js'
import { ADMIN_URL, uniqueName } from '../test/helpers/env.js'

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)

// 20 columns: a text key, text, integers, numerics, booleans, a date and timestamps.
const wide = pgTable('wide', {
  key: text('key').primaryKey(),
  name: text('name').notNull(),
  email: text('email'),
  city: text('city'),
  country: text('country'),
  note: text('note'),
  a: integer('a'),
  b: integer('b'),
  c: integer('c'),
  d: integer('d'),
  price: numeric('price'),
  cost: numeric('cost'),
  weight: numeric('weight'),
  active: pgBoolean('active'),
  vip: pgBoolean('vip'),
  born: date('born'),
  seen: timestamp('seen', { withTimezone: true }),
  created: timestamp('created_at', { withTimezone: true }),
  score: integer('score'),
  rank: integer('rank'),
})
const DDL = `create table wide (key text primary key, name text not null, email text, city text, country text, note text,
  a integer, b integer, c integer, d integer, price numeric, cost numeric, weight numeric, active boolean, vip boolean,
  born date, seen timestamptz, created_at timestamptz, score integer, rank integer)`

/** A source row as an API would send it: strings for numbers and dates, nested address. */
const sourceRow = (i: number, v: number) => ({
  key: `k${i}`,
  name: `Name ${i}`,
  email: `user${i}@example.com`,
  address: { city: 'Lyon', country: 'FR' },
  note: `version ${v}`,
  a: i,
  b: i + v,
  c: String(i % 1000),
  d: v,
  price: '19.99',
  cost: '7.5',
  weight: String(i / 7).slice(0, 10),
  active: i % 2 === 0,
  vip: 'false',
  born: '1990-05-17',
  seen: '2026-11-30T10:00:00.000Z',
  created: '2026-01-01T00:00:00Z',
  score: i % 100,
  rank: v,
})
/** The same row already in drizzle's shape, for bulkUpsert (which takes typed values, no casting). */
const typedRow = (i: number, v: number) => ({
  key: `k${i}`,
  name: `Name ${i}`,
  email: `user${i}@example.com`,
  city: 'Lyon',
  country: 'FR',
  note: `version ${v}`,
  a: i,
  b: i + v,
  c: i % 1000,
  d: v,
  price: '19.99',
  cost: '7.5',
  weight: String(i / 7).slice(0, 10),
  active: i % 2 === 0,
  vip: false,
  born: '1990-05-17',
  seen: new Date('2026-11-30T10:00:00.000Z'),
  created: new Date('2026-01-01T00:00:00Z'),
  score: i % 100,
  rank: v,
})

async function* stream(v: number) {
  for (let i = 0; i < ROWS; i++) yield sourceRow(i, v)
}

const dbName = uniqueName('benchmap')
const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
await admin.unsafe(`create database ${dbName}`)
const client = connect(withDatabase(ADMIN_URL, dbName), { max: 2 })
const db = drizzle(client)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const results: Record<string, number[]> = {}
const record = (name: string, ms: number) => {
  const runs = results[name] ?? []
  runs.push(ROWS / (ms / 1000))
  results[name] = runs
}
let peakRssGrowth = 0

try {
  await client.unsafe(DDL)
  for (let round = 0; round < ROUNDS; round++) {
    // mapper: fresh insert, then an update of every row
    await client`truncate wide`
    const rss0 = process.memoryUsage().rss
    const sampler = setInterval(() => (peakRssGrowth = Math.max(peakRssGrowth, process.memoryUsage().rss - rss0)), 20)
    let t = performance.now()
    const ins = await mapAndUpsert(db, { rows: stream(round), table: wide, key: wide.key })
    record('mapper insert', performance.now() - t)
    t = performance.now()
    const upd = await mapAndUpsert(db, { rows: stream(round + 1), table: wide, key: wide.key })
    record('mapper update', performance.now() - t)
    clearInterval(sampler)
    if (ins.inserted !== ROWS || upd.updated !== ROWS || ins.rejected + upd.rejected > 0) throw new Error(`mapper counts wrong: ${JSON.stringify({ ins, upd })}`)

    // bulkUpsert: the same rows, already typed (its input is built in memory, as its API requires)
    await client`truncate wide`
    let rows = Array.from({ length: ROWS }, (_, i) => typedRow(i, round))
    t = performance.now()
    const bi = await bulkUpsert(db, wide, rows, { key: wide.key })
    record('bulkUpsert insert', performance.now() - t)
    rows = Array.from({ length: ROWS }, (_, i) => typedRow(i, round + 1))
    t = performance.now()
    const bu = await bulkUpsert(db, wide, rows, { key: wide.key })
    record('bulkUpsert update', performance.now() - t)
    if (bi.inserted !== ROWS || bu.updated !== ROWS) throw new Error('bulkUpsert counts wrong')
  }
  const fig = (name: string) => Math.round(median(results[name]!))
  console.log(`rows per load: ${ROWS} × 20 columns, ${ROUNDS} rounds (medians); load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`)
  for (const name of Object.keys(results)) console.log(`${name}: ${fig(name)} rows/s`)
  console.log(`ratio mapper/bulkUpsert insert: ${(fig('mapper insert') / fig('bulkUpsert insert')).toFixed(2)}`)
  console.log(`ratio mapper/bulkUpsert update: ${(fig('mapper update') / fig('bulkUpsert update')).toFixed(2)}`)
  console.log(`mapper peak RSS growth while streaming: ${(peakRssGrowth / 1024 / 1024).toFixed(1)} MiB`)
} finally {
  await client.end()
  await admin.unsafe(`drop database if exists ${dbName} with (force)`)
  await admin.end()
}
