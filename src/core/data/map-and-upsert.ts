/**
 * JSON → table bulk load (the seed's map_and_upsert / apply_schema): rows from an API, a file or a
 * stream are renamed, flattened, cast to the table's column types in JS (with the row number and field
 * in every error), streamed into a temporary staging table with COPY, then merged by key with one
 * UPDATE … FROM and one INSERT … SELECT. All in one transaction: the table sees all of the load or none
 * of it. Rows that can't be loaded are returned with their reasons, never silently dropped.
 *
 *   const result = await mapAndUpsert(req.tenantDb, {
 *     rows: items,                                   // array, iterable or async iterable (a parsed file)
 *     table: customers, key: customers.externalId,
 *     columnMap: { id: 'external_id', 'meta.note': 'description' },
 *     unnest: ['meta'],                             // { meta: { note } } → meta_note (and meta.note)
 *   })
 *   // { inserted, updated, rejected, duplicates, rejectedRows: [{ row, field, reason }], ignoredFields }
 *
 * A field a row leaves out keeps the stored value on an update and takes the column's default on an
 * insert; an explicit null is a null (refused for a NOT NULL column). Two rows with one key: the last
 * wins. Memory stays flat however many rows: they flow from the source through COPY (with
 * backpressure); only rejected rows' reasons are kept (up to `maxRejectedDetails`).
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { type Column, getTableColumns } from 'drizzle-orm'
import { getTableConfig, type PgColumn, type PgTable } from 'drizzle-orm/pg-core'
import type postgres from 'postgres'
import type { Sql } from '../db/connect.js'
import { badRequest } from '../lib/errors.js'
import { primaryKey } from './table-helpers.js'

export type CastKind = 'text' | 'uuid' | 'integer' | 'numeric' | 'boolean' | 'date' | 'datetime' | 'json'
type Row = Record<string, unknown>

export interface MapAndUpsertOptions {
  rows: Iterable<Row> | AsyncIterable<Row>
  table: PgTable
  /** The conflict target (a unique index's columns); default the primary key. */
  key?: PgColumn | readonly PgColumn[]
  /** Source field (after flattening; dotted or underscored) → column (property or SQL name). */
  columnMap?: Record<string, string>
  /** Nested objects to flatten: `address: { city }` → `address_city`. Default: every nested plain object. */
  unnest?: readonly string[]
  /** Override the cast of a column (by property or SQL name); default: from the column's type. */
  typeMap?: Record<string, CastKind>
  /** Keep at most this many rejected rows' details (the count is always exact). Default 1,000. */
  maxRejectedDetails?: number
  /** Values for new rows' columns a row does not give (by property or SQL name): e.g. `{ createdBy: userId }`. Never used on an update. */
  defaults?: Record<string, unknown>
  /** Columns every row may give (by property or SQL name), beyond those of the first row and the map. */
  columns?: readonly string[]
  /**
   * Runs after the merge, before the commit, in the load's transaction: check an invariant the whole
   * load must keep (a plan's row limit) and throw to roll all of it back.
   */
  beforeCommit?: (tx: postgres.TransactionSql, result: MapAndUpsertResult) => Promise<void>
}

export interface RejectedRow {
  /** 1-based position in the input. */
  row: number
  field?: string
  reason: string
}

export interface MapAndUpsertResult {
  inserted: number
  updated: number
  rejected: number
  /** Rows with the same key as a later row of the same load (the later one wins). */
  duplicates: number
  rejectedRows: RejectedRow[]
  /** Source fields that match no column (ignored, listed once). */
  ignoredFields: string[]
}

interface Target {
  prop: string
  column: Column
  cast: CastKind
}

class RowError extends Error {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(reason)
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const NUMERIC = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/
const TRUE = new Set(['true', 't', 'yes', 'y', '1'])
const FALSE = new Set(['false', 'f', 'no', 'n', '0'])

function castKindOf(column: Column): CastKind {
  switch (column.columnType) {
    case 'PgUUID':
      return 'uuid'
    case 'PgInteger':
    case 'PgSmallInt':
    case 'PgBigInt53':
    case 'PgBigInt64':
    case 'PgSerial':
    case 'PgBigSerial53':
    case 'PgBigSerial64':
      return 'integer'
    case 'PgNumeric':
    case 'PgReal':
    case 'PgDoublePrecision':
      return 'numeric'
    case 'PgBoolean':
      return 'boolean'
    case 'PgDate':
    case 'PgDateString':
      return 'date'
    case 'PgTimestamp':
    case 'PgTimestampString':
      return 'datetime'
    case 'PgJson':
    case 'PgJsonb':
      return 'json'
    default:
      return 'text'
  }
}

const INTEGER = /^\s*[+-]?\d{1,16}\s*$/
// ISO 8601 with a zone (Z or ±hh:mm): passed to Postgres as written once its fields are in range.
const ISO_DATETIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$/
const daysIn = (y: number, m: number) => new Date(Date.UTC(y, m, 0)).getUTCDate()
const validDate = (y: number, m: number, d: number) => m >= 1 && m <= 12 && d >= 1 && d <= (d > 28 ? daysIn(y, m) : 28)

function rowError(field: string, value: unknown, what: string): RowError {
  return new RowError(field, `${JSON.stringify(value)?.slice(0, 80)} is not ${what}`)
}

/** A value as COPY text (null → \N), or a RowError naming the field. The seed's apply_schema. */
export function castValue(value: unknown, kind: CastKind, field: string, column?: Column): string | null {
  if (value === null || value === undefined || (value === '' && kind !== 'text')) return null
  switch (kind) {
    case 'uuid':
      if (typeof value !== 'string' || !UUID.test(value)) throw rowError(field, value, 'a UUID')
      return value
    case 'integer': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && INTEGER.test(value) ? Number(value) : Number.NaN
      if (!Number.isSafeInteger(n)) throw rowError(field, value, 'an integer')
      if (column?.columnType === 'PgInteger' && (n > 2_147_483_647 || n < -2_147_483_648)) throw rowError(field, value, 'a 32-bit integer')
      if (column?.columnType === 'PgSmallInt' && (n > 32767 || n < -32768)) throw rowError(field, value, 'a 16-bit integer')
      return String(n)
    }
    case 'numeric': {
      const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : typeof value === 'string' ? value.trim() : ''
      if (!NUMERIC.test(text)) throw rowError(field, value, 'a number')
      return text
    }
    case 'boolean': {
      if (typeof value === 'boolean') return value ? 't' : 'f'
      const text = String(value).trim().toLowerCase()
      if (TRUE.has(text)) return 't'
      if (FALSE.has(text)) return 'f'
      throw rowError(field, value, 'a boolean')
    }
    case 'date': {
      const m = typeof value === 'string' ? DATE.exec(value.trim()) : null
      // 2024-02-30 is refused here, not by Postgres halfway through a load.
      if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3]))) throw rowError(field, value, 'a date (YYYY-MM-DD)')
      return m[0]
    }
    case 'datetime': {
      if (typeof value === 'string') {
        const m = ISO_DATETIME.exec(value)
        if (m && validDate(Number(m[1]), Number(m[2]), Number(m[3])) && Number(m[4]) < 24 && Number(m[5]) < 60 && Number(m[6] ?? 0) < 60) return value
      }
      // Anything else Date understands (a Date, epoch milliseconds, an ISO string without a zone: UTC).
      const d = value instanceof Date ? value : typeof value === 'number' ? new Date(value) : typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : undefined
      if (!d || Number.isNaN(d.getTime())) throw rowError(field, value, 'a date-time (ISO 8601 or epoch milliseconds)')
      return d.toISOString()
    }
    case 'json':
      return JSON.stringify(value)
    default: {
      if (typeof value === 'object') throw rowError(field, value, 'text')
      const text = typeof value === 'string' ? value : String(value)
      const allowed = column?.enumValues
      if (allowed?.length && !allowed.includes(text)) throw rowError(field, value, `one of ${allowed.join(', ')}`)
      return text
    }
  }
}

const isNested = (value: unknown) => value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)

/** Flattens the nested objects named (or all of them): { a: { b: 1 } } → { a_b: 1 }, recursively. */
export function flatten(row: Row, unnest?: readonly string[]): Row {
  const out: Row = {}
  for (const field in row) {
    const value = row[field]
    if (isNested(value) && (!unnest || unnest.includes(field))) flattenInto(out, value as Row, field)
    else out[field] = value
  }
  return out
}

function flattenInto(out: Row, row: Row, prefix: string) {
  for (const field in row) {
    const value = row[field]
    if (isNested(value)) flattenInto(out, value as Row, `${prefix}_${field}`)
    else out[`${prefix}_${field}`] = value
  }
}

// COPY's text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
const copyText = (v: string | null) => (v === null ? '\\N' : v.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!))
const ident = (name: string) => `"${name.replaceAll('"', '""')}"`

export async function mapAndUpsert(db: { $client: Sql }, opts: MapAndUpsertOptions): Promise<MapAndUpsertResult> {
  const { table } = opts
  const tableName = getTableConfig(table).name
  const schemaName = getTableConfig(table).schema
  const qualified = schemaName ? `${ident(schemaName)}.${ident(tableName)}` : ident(tableName)
  const columns = getTableColumns(table) as Record<string, Column>
  const byName = new Map<string, { prop: string; column: Column }>()
  for (const [prop, column] of Object.entries(columns)) {
    byName.set(prop, { prop, column })
    byName.set(column.name, { prop, column })
  }
  const resolve = (name: string) => {
    const found = byName.get(name)
    if (!found) throw badRequest('INVALID_ROWS', `table ${tableName} has no column ${name}`)
    return found
  }
  const key = (opts.key ? (Array.isArray(opts.key) ? opts.key : [opts.key]) : [primaryKey(table)]) as PgColumn[]
  const keyNames = new Set(key.map((c) => c.name))
  const columnMap = new Map<string, string>()
  for (const [from, to] of Object.entries(opts.columnMap ?? {})) {
    resolve(to) // a typo in the map is the caller's error, said before anything is read
    columnMap.set(from.replaceAll('.', '_'), to)
  }
  const defaults = new Map(Object.entries(opts.defaults ?? {}).map(([name, value]) => [resolve(name).prop, value]))
  const typeMap = new Map(Object.entries(opts.typeMap ?? {}).map(([name, kind]) => [resolve(name).prop, kind]))
  const maxDetails = opts.maxRejectedDetails ?? 1000
  const result: MapAndUpsertResult = { inserted: 0, updated: 0, rejected: 0, duplicates: 0, rejectedRows: [], ignoredFields: [] }
  const ignored = new Set<string>()
  const reject = (r: RejectedRow) => {
    result.rejected++
    if (result.rejectedRows.length < maxDetails) result.rejectedRows.push(r)
  }

  const source = opts.rows
  const iterator: AsyncIterator<Row> | Iterator<Row> = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<Row>)[Symbol.iterator]()
  let rowNumber = 0
  const isRow = (raw: unknown): raw is Row => raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !(raw instanceof Error)
  const rejectItem = (raw: unknown) => {
    rowNumber++
    // (a source may yield an Error for an item it could not read, e.g. a line that is not JSON)
    reject({ row: rowNumber, reason: raw instanceof Error ? raw.message : 'not an object' })
  }
  let first = await iterator.next()
  for (; !first.done && !isRow(first.value); first = await iterator.next()) rejectItem(first.value)
  if (first.done) return result

  // Which column a source field lands in (null: none), resolved once per distinct field name.
  const fieldTargets = new Map<string, string | null>()
  const targetOf = (field: string) => {
    let prop = fieldTargets.get(field)
    if (prop === undefined) {
      prop = byName.get(columnMap.get(field) ?? field)?.prop ?? null
      fieldTargets.set(field, prop)
      if (prop === null) ignored.add(field)
    }
    return prop
  }
  /** The source row with its fields mapped to column properties. */
  const mapRow = (raw: Row): Map<string, unknown> => {
    const mapped = new Map<string, unknown>()
    const flat = flatten(raw, opts.unnest)
    for (const field in flat) {
      const prop = targetOf(field)
      if (prop !== null) mapped.set(prop, flat[field])
    }
    return mapped
  }

  // The load's columns: those the first row and the map name, those with a JS-side default (ids), and the key.
  const firstMapped = mapRow(first.value)
  const props = new Set<string>([
    ...firstMapped.keys(),
    ...[...columnMap.values(), ...(opts.columns ?? [])].map((n) => resolve(n).prop),
    ...defaults.keys(),
  ])
  // Columns only the JS default fills (a new row's id) are written on insert, never on update.
  const insertOnlyProps = new Set<string>()
  for (const [prop, column] of Object.entries(columns)) {
    if (!props.has(prop) && column.defaultFn) insertOnlyProps.add(prop)
    if (column.defaultFn || keyNames.has(column.name)) props.add(prop)
  }
  const targets: Target[] = [...props].map((prop) => ({ prop, column: columns[prop]!, cast: typeMap.get(prop) ?? castKindOf(columns[prop]!) }))

  /** The row as one line of COPY text, or '' when it is rejected (and recorded). */
  function line(mapped: Map<string, unknown>): string {
    rowNumber++
    try {
      let given = ''
      const values = targets.map(({ prop, column, cast }) => {
        let value = mapped.get(prop)
        given += value === undefined ? '0' : '1'
        if (value === null && column.notNull && !keyNames.has(column.name)) throw new RowError(prop, 'must not be null')
        if (value === undefined) value = defaults.has(prop) ? defaults.get(prop) : column.defaultFn?.()
        const text = castValue(value, cast, prop, column)
        if (text === null && keyNames.has(column.name)) throw new RowError(prop, 'the key is missing')
        if (text?.includes('\u0000')) throw new RowError(prop, 'contains a NUL character')
        return copyText(text)
      })
      return `${values.join('\t')}\t${rowNumber}\t${given}\n`
    } catch (err) {
      if (!(err instanceof RowError)) throw err
      reject({ row: rowNumber, field: err.field, reason: err.message })
      return ''
    }
  }
  // Lines are sent in ~64 KiB chunks: one COPY message and one stream write per chunk, not per row.
  async function* copyStream(): AsyncGenerator<string> {
    let chunk = line(firstMapped)
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const raw = next.value
      if (!isRow(raw)) {
        rejectItem(raw)
        continue
      }
      chunk += line(mapRow(raw))
      if (chunk.length >= 65_536) {
        yield chunk
        chunk = ''
      }
    }
    if (chunk) yield chunk
  }

  const stage = 'map_and_upsert_stage'
  const col = (t: Target) => ident(t.column.name)
  const columnList = targets.map(col).join(', ')
  const keyList = key.map((c) => ident(c.name)).join(', ')
  const sameKey = (a: string, b: string) => key.map((c) => `${a}.${ident(c.name)} = ${b}.${ident(c.name)}`).join(' and ')
  const existing = `exists (select 1 from ${qualified} t where ${sameKey('t', 's')})`
  // Whether the row gave the field (its bit in __given): a field left out is not the same as a null.
  const given = (t: Target) => `get_bit(s.__given, ${targets.indexOf(t)}) = 1`
  /** Staged values that are not the row's own but a fallback for a new row (`defaults`, a JS default such as an id). */
  const hasFallback = (t: Target) => defaults.has(t.prop) || t.column.defaultFn !== undefined

  await db.$client.begin(async (tx) => {
    // Typed like the target (so COPY parses each value as its column would), gone at commit.
    await tx.unsafe(`create temp table ${stage} on commit drop as select ${columnList}, 0::bigint as __row, ''::varbit as __given from ${qualified} with no data`)
    const writable = await tx.unsafe(`copy ${stage} (${columnList}, __row, __given) from stdin`).writable()
    await pipeline(Readable.from(copyStream()), writable)

    // Two rows with one key: the last one wins, the earlier ones are counted as duplicates.
    const [counts] = await tx.unsafe<{ staged: string; keys: string }[]>(`select count(*) as staged, count(distinct (${keyList})) as keys from ${stage}`)
    result.duplicates = Number(counts!.staged) - Number(counts!.keys)
    if (result.duplicates > 0) await tx.unsafe(`delete from ${stage} s using ${stage} later where ${sameKey('s', 'later')} and s.__row < later.__row`)

    // A field a row leaves out keeps the stored value on an update and takes the column's default on an
    // insert. A new row without a NOT NULL column that has no default is rejected here, with its line
    // number, rather than failing the whole load in Postgres.
    const defaultsOf = new Map(
      (
        await tx.unsafe<{ name: string; expr: string }[]>(
          `select a.attname as name, pg_get_expr(d.adbin, d.adrelid) as expr from pg_attribute a
           join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum where a.attrelid = '${qualified.replaceAll("'", "''")}'::regclass`,
        )
      ).map((r) => [r.name, r.expr]),
    )
    const valueColumns = targets.filter((t) => !keyNames.has(t.column.name))
    const required = valueColumns.filter((t) => t.column.notNull && !defaultsOf.has(t.column.name) && !hasFallback(t))
    if (required.length) {
      const missing = await tx.unsafe<{ row: string; field: string }[]>(
        `delete from ${stage} s where (${required.map((t) => `not ${given(t)}`).join(' or ')}) and not ${existing}
         returning s.__row as row, case ${required.map((t) => `when not ${given(t)} then '${t.prop}'`).join(' ')} end as field`,
      )
      for (const m of missing) reject({ row: Number(m.row), field: m.field, reason: 'is required' })
    }

    const updatable = valueColumns.filter((t) => !insertOnlyProps.has(t.prop))
    if (updatable.length) {
      const sets = updatable.map((t) => `${col(t)} = case when ${given(t)} then s.${col(t)} else t.${col(t)} end`)
      // updated_at-style columns move forward on update, as drizzle's update() does (only now() is supported here).
      for (const [prop, column] of Object.entries(columns)) if (column.onUpdateFn && !props.has(prop)) sets.push(`${ident(column.name)} = now()`)
      const updated = await tx.unsafe(`update ${qualified} t set ${sets.join(', ')} from ${stage} s where ${sameKey('t', 's')}`)
      result.updated = updated.count
    }
    const values = targets.map((t) => {
      const fallback = defaultsOf.get(t.column.name)
      return hasFallback(t) || !fallback || keyNames.has(t.column.name) ? `s.${col(t)}` : `case when ${given(t)} then s.${col(t)} else ${fallback} end`
    })
    // In a shared tenant's layout the database stamps tenant_id, and `t` shows only this tenant's rows.
    const inserted = await tx.unsafe(`insert into ${qualified} (${columnList}) select ${values.join(', ')} from ${stage} s where not ${existing}`)
    result.inserted = inserted.count
    await opts.beforeCommit?.(tx, result)
  })
  result.rejectedRows.sort((a, b) => a.row - b.row)
  result.ignoredFields = [...ignored]
  return result
}
