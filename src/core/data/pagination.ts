/**
 * Pagination for any drizzle select (the seed's paginate_sql), two ways:
 * - offset: `paginateOffset(db.select().from(t).orderBy(t.name).$dynamic(), { page: 2, pageSize: 50 })`,
 *   fine for small tables and "page 3 of N" screens;
 * - keyset: `paginateCursor(db, t, { sort: t.createdAt, limit: 50, cursor })`, constant cost per page at any
 *   depth and stable while rows are added; the cursor is opaque (base64url) and a tampered one is a 400.
 * Both fetch one row more than asked to know whether there is a next page, without a count(*).
 */
import { and, asc, desc, getTableColumns, type SQL, sql } from 'drizzle-orm'
import type { PgColumn, PgSelect, PgTable } from 'drizzle-orm/pg-core'
import { badRequest } from '../lib/errors.js'
import { type AnyDb, primaryKey, type RowOf } from './table-helpers.js'

export interface OffsetPage<R> {
  items: R[]
  page: number
  pageSize: number
  hasMore: boolean
}

export async function paginateOffset<Q extends PgSelect>(query: Q, opts: { page?: number; pageSize?: number } = {}): Promise<OffsetPage<Awaited<Q>[number]>> {
  const page = opts.page ?? 1
  const pageSize = opts.pageSize ?? 50
  if (!Number.isSafeInteger(page) || page < 1) throw badRequest('VALIDATION_ERROR', 'page must be an integer ≥ 1')
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw badRequest('VALIDATION_ERROR', 'pageSize must be an integer from 1 to 1000')
  const rows = (await query.limit(pageSize + 1).offset((page - 1) * pageSize)) as Awaited<Q>[number][]
  return { items: rows.slice(0, pageSize), page, pageSize, hasMore: rows.length > pageSize }
}

export interface CursorPage<R> {
  items: R[]
  /** Pass back as `cursor` for the next page; null on the last one. */
  nextCursor: string | null
}

export interface CursorOptions {
  /** Order by this column, then by the primary key to break ties (default: the primary key alone). */
  sort?: PgColumn
  direction?: 'asc' | 'desc'
  limit?: number
  cursor?: string | null | undefined
  where?: SQL | undefined
  /** The unique tie-breaker (default: the table's primary key). */
  key?: PgColumn
}

const encode = (values: unknown[]) => Buffer.from(JSON.stringify(values)).toString('base64url')

function decode(cursor: string, arity: number): unknown[] {
  try {
    const values: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(values) && values.length === arity && values.every((v) => typeof v === 'string')) return values
  } catch {}
  throw badRequest('INVALID_CURSOR', 'the pagination cursor is not valid')
}

export async function paginateCursor<T extends PgTable>(db: AnyDb, table: T, opts: CursorOptions = {}): Promise<CursorPage<RowOf<T>>> {
  const key = opts.key ?? primaryKey(table)
  const columns = opts.sort && opts.sort !== key ? [opts.sort, key] : [key]
  const limit = opts.limit ?? 50
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw badRequest('VALIDATION_ERROR', 'limit must be an integer from 1 to 1000')
  const descending = (opts.direction ?? 'asc') === 'desc'
  let after: SQL | undefined
  if (opts.cursor) {
    const values = decode(opts.cursor, columns.length)
    // A row-value comparison: (sort, id) > ($1, $2) walks the (sort, id) index in one range scan.
    const left = sql.join(
      columns.map((c) => sql`${c}`),
      sql`, `,
    )
    const right = sql.join(
      columns.map((c, i) => sql`${values[i]}::${sql.raw(c.getSQLType())}`),
      sql`, `,
    )
    after = descending ? sql`(${left}) < (${right})` : sql`(${left}) > (${right})`
  }
  // The cursor columns are read back as Postgres writes them (text): a timestamp keeps its microseconds,
  // which a JS Date would round away (and the next page would repeat rows).
  const cursorFields = Object.fromEntries(columns.map((c, i) => [`__cursor${i}`, sql<string>`${c}::text`]))
  const rows = (await db
    .select({ ...getTableColumns(table), ...cursorFields })
    .from(table as PgTable)
    .where(and(opts.where, after))
    .orderBy(...columns.map((c) => (descending ? desc(c) : asc(c))))
    .limit(limit + 1)) as Record<string, unknown>[]
  const items = rows.slice(0, limit).map((row) => {
    const item = { ...row }
    for (const field of Object.keys(cursorFields)) delete item[field]
    return item as RowOf<T>
  })
  const last = rows.length > limit ? rows[limit - 1]! : undefined
  return { items, nextCursor: last ? encode(Object.keys(cursorFields).map((f) => last[f])) : null }
}
