/**
 * Typed CRUD over any drizzle table, for any of the kit's databases (a tenant's `req.tenantDb`, a job's
 * tenant handle, the host DB, or a transaction of one): the seed's insert_only / upsert / get_by_id /
 * update_record / delete_record / bulk_delete / with_transaction.
 *
 *   const row = await insertOnly(db, projects, { name: 'A', createdBy })        // undefined on conflict
 *   const { inserted, updated } = await bulkUpsert(db, projects, rows, { key: projects.id })
 *
 * Bulk helpers split their rows into statements under Postgres' 65,535 bind parameters (one parameter
 * per column per row), so 100,000 rows is a few statements, never "too many parameters".
 */
import { type Column, getTableColumns, inArray, type SQL, sql } from 'drizzle-orm'
import { getTableConfig, type PgColumn, type PgDatabase, type PgQueryResultHKT, type PgTable, type PgTransactionConfig } from 'drizzle-orm/pg-core'
import { badRequest, pgCode } from '../lib/errors.js'
import { isSharedTenantDb } from '../tenancy/shared/scoped-client.js'

// biome-ignore lint/suspicious/noExplicitAny: any schema: the helpers only use the query builder.
export type AnyDb = PgDatabase<PgQueryResultHKT, any, any>
export type RowOf<T extends PgTable> = T['$inferSelect']
export type NewRowOf<T extends PgTable> = T['$inferInsert']
type KeyColumns = PgColumn | readonly PgColumn[]

/** Postgres' limit on bind parameters in one statement. */
export const MAX_BIND_PARAMETERS = 65_535

/** Rows per INSERT so that rows × columns stays under the parameter limit (and under `cap`). */
export function rowsPerStatement(table: PgTable, cap = 5_000): number {
  const columns = Object.keys(getTableColumns(table)).length
  return Math.max(1, Math.min(cap, Math.floor(MAX_BIND_PARAMETERS / columns)))
}

export function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size)
}

/** The table's primary key column (a composite or missing key must be named by the caller). */
export function primaryKey(table: PgTable): PgColumn {
  const config = getTableConfig(table)
  const single = config.columns.filter((c) => c.primary)
  if (single.length === 1) return single[0]!
  throw badRequest('INVALID_ROWS', `table ${config.name} has no single-column primary key: pass \`key\``)
}

const asList = (key: KeyColumns): PgColumn[] => (Array.isArray(key) ? [...key] : [key as PgColumn])

/**
 * An ON CONFLICT target for this handle. In a shared tenant's layout the primary key stays (id: uuids,
 * unique across tenants) but every other unique key leads with tenant_id (stamped by the database,
 * absent from the drizzle table), so it is named first there.
 */
function conflictTarget(db: AnyDb, table: PgTable, key: PgColumn[]): PgColumn[] {
  return isSharedTenantDb(db) && !isPrimaryKey(table, key) ? [TENANT_ID_COLUMN, ...key] : key
}

export function isPrimaryKey(table: PgTable, key: readonly { name: string }[]): boolean {
  const config = getTableConfig(table)
  const pk = config.primaryKeys[0]?.columns ?? config.columns.filter((c) => c.primary)
  return pk.length === key.length && pk.every((c) => key.some((k) => k.name === c.name))
}
// What drizzle reads of a conflict target column: its name (tenant_id is not in the drizzle table).
const TENANT_ID_COLUMN = { name: 'tenant_id', keyAsName: false } as unknown as PgColumn

/** `set` of ON CONFLICT DO UPDATE: each given non-key column takes the proposed row's value (EXCLUDED). */
function excludedSet(table: PgTable, rows: readonly Record<string, unknown>[], key: PgColumn[]): Record<string, SQL> {
  const columns = getTableColumns(table) as Record<string, Column>
  const keyNames = new Set(key.map((c) => c.name))
  const given = new Set<string>()
  for (const row of rows) for (const prop of Object.keys(row)) given.add(prop)
  const set: Record<string, SQL> = {}
  for (const prop of given) {
    const column = columns[prop]
    if (!column) throw badRequest('INVALID_ROWS', `table ${getTableConfig(table).name} has no column ${prop}`)
    if (!keyNames.has(column.name)) set[prop] = sql.raw(`excluded."${column.name.replaceAll('"', '""')}"`)
  }
  // A column with an update hook (updated_at) moves forward on every update, as drizzle's update() does.
  for (const [prop, column] of Object.entries(columns)) {
    if (!set[prop] && !keyNames.has(column.name) && column.onUpdateFn) set[prop] = sql`${column.onUpdateFn()}`
  }
  return set
}

/** Insert one row; on any unique conflict (or on `target`'s) do nothing. The row, or undefined if it existed. */
export async function insertOnly<T extends PgTable>(db: AnyDb, table: T, row: NewRowOf<T>, opts: { target?: KeyColumns } = {}): Promise<RowOf<T> | undefined> {
  const [inserted] = await bulkInsertOnly(db, table, [row], opts)
  return inserted
}

/** Insert rows, skipping those that conflict; returns the rows that were inserted. */
export async function bulkInsertOnly<T extends PgTable>(
  db: AnyDb,
  table: T,
  rows: readonly NewRowOf<T>[],
  opts: { target?: KeyColumns; chunkSize?: number } = {},
): Promise<RowOf<T>[]> {
  const out: RowOf<T>[] = []
  for (const chunk of chunks(rows, opts.chunkSize ?? rowsPerStatement(table))) {
    const query = db
      .insert(table)
      .values(chunk as NewRowOf<T>[])
      .onConflictDoNothing(opts.target ? { target: conflictTarget(db, table, asList(opts.target)) } : {})
      .returning()
    out.push(...((await query) as RowOf<T>[]))
  }
  return out
}

export interface UpsertResult<T extends PgTable> {
  rows: RowOf<T>[]
  inserted: number
  updated: number
}

/**
 * Insert rows or, when `key` (default: the primary key) matches, update the columns the rows give
 * (the key excepted). Counts inserted and updated rows apart (Postgres' xmax = 0 on a fresh row).
 */
export async function bulkUpsert<T extends PgTable>(
  db: AnyDb,
  table: T,
  rows: readonly NewRowOf<T>[],
  opts: { key?: KeyColumns; chunkSize?: number } = {},
): Promise<UpsertResult<T>> {
  const key = asList(opts.key ?? primaryKey(table))
  const result: UpsertResult<T> = { rows: [], inserted: 0, updated: 0 }
  if (rows.length === 0) return result
  const set = excludedSet(table, rows as Record<string, unknown>[], key)
  const columns = getTableColumns(table)
  for (const chunk of chunks(rows, opts.chunkSize ?? rowsPerStatement(table))) {
    const insert = db.insert(table).values(chunk as NewRowOf<T>[])
    const target = conflictTarget(db, table, key)
    const upsert = Object.keys(set).length > 0 ? insert.onConflictDoUpdate({ target, set }) : insert.onConflictDoNothing({ target })
    const returned = (await upsert.returning({ ...columns, __inserted: sql<boolean>`(xmax = 0)` })) as (RowOf<T> & { __inserted: boolean })[]
    for (const { __inserted, ...row } of returned) {
      if (__inserted) result.inserted++
      else result.updated++
      result.rows.push(row as RowOf<T>)
    }
  }
  return result
}

/** One row inserted or updated on `key`; returns it. */
export async function upsert<T extends PgTable>(db: AnyDb, table: T, row: NewRowOf<T>, opts: { key?: KeyColumns } = {}): Promise<RowOf<T>> {
  const { rows } = await bulkUpsert(db, table, [row], opts)
  return rows[0]!
}

export async function getById<T extends PgTable>(db: AnyDb, table: T, id: unknown, opts: { key?: PgColumn } = {}): Promise<RowOf<T> | undefined> {
  const key = opts.key ?? primaryKey(table)
  const [row] = (await db
    .select()
    .from(table as PgTable)
    .where(sql`${key} = ${id}`)
    .limit(1)) as RowOf<T>[]
  return row
}

/** Update the given columns of one row; the updated row, or undefined if there is none with this id. */
export async function updateById<T extends PgTable>(
  db: AnyDb,
  table: T,
  id: unknown,
  patch: Partial<NewRowOf<T>>,
  opts: { key?: PgColumn } = {},
): Promise<RowOf<T> | undefined> {
  if (Object.keys(patch).length === 0) throw badRequest('INVALID_ROWS', 'nothing to update: the patch is empty')
  const key = opts.key ?? primaryKey(table)
  const [row] = (await db
    .update(table)
    .set(patch as never)
    .where(sql`${key} = ${id}`)
    .returning()) as RowOf<T>[]
  return row
}

/** Delete one row; whether it existed. */
export async function deleteById(db: AnyDb, table: PgTable, id: unknown, opts: { key?: PgColumn } = {}): Promise<boolean> {
  return (await bulkDelete(db, table, [id], opts)) === 1
}

/** Delete rows by id (any number of ids: chunked under the parameter limit); how many were deleted. */
export async function bulkDelete(db: AnyDb, table: PgTable, ids: readonly unknown[], opts: { key?: PgColumn } = {}): Promise<number> {
  const key = opts.key ?? primaryKey(table)
  let deleted = 0
  for (const chunk of chunks(ids, MAX_BIND_PARAMETERS - 1)) {
    const rows = await db.delete(table).where(inArray(key, chunk)).returning({ k: key })
    deleted += rows.length
  }
  return deleted
}

// serialization_failure and deadlock_detected: the transaction did nothing and may simply be run again.
const RETRYABLE = new Set(['40001', '40P01'])

/**
 * Run `work` in one transaction: all of it commits or none. With `retries`, a transaction that lost a
 * serialization race or a deadlock (nothing was written) is run again, up to that many more times.
 */
export async function withTransaction<D extends AnyDb, R>(
  db: D,
  work: (tx: Parameters<Parameters<D['transaction']>[0]>[0]) => Promise<R>,
  opts: PgTransactionConfig & { retries?: number } = {},
): Promise<R> {
  const { retries = 0, ...config } = opts
  for (let attempt = 0; ; attempt++) {
    try {
      // (an empty config would still emit a bare `set transaction`, which Postgres refuses)
      return (await db.transaction((tx) => work(tx as never), Object.keys(config).length ? config : undefined)) as R
    } catch (err) {
      const code = pgCode(err)
      if (attempt >= retries || !code || !RETRYABLE.has(code)) throw err
    }
  }
}
