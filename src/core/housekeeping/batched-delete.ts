/**
 * Deleting old rows in batches: each statement removes at most `batch` rows, so a first run over a
 * year of history never holds a long lock or one huge transaction, and a crash mid-way loses nothing
 * (the next run simply continues). Every caller's condition is idempotent: running it again deletes
 * nothing more.
 */
import type postgres from 'postgres'
import type { Sql } from '../db/connect.js'

export const DELETE_BATCH = 5000

/** Run `deleteBatch` (returns the rows it deleted, at most DELETE_BATCH) until a batch comes back short; the total. */
export async function deleteInBatches(deleteBatch: (limit: number) => Promise<number>): Promise<number> {
  let total = 0
  for (;;) {
    const n = await deleteBatch(DELETE_BATCH)
    total += n
    if (n < DELETE_BATCH) return total
  }
}

/** `delete from <table> where <condition>` in batches, by id; returns the number deleted. */
export function deleteWhere(sql: Sql, table: string, condition: postgres.Fragment): Promise<number> {
  return deleteInBatches(async (limit) => {
    const rows = await sql`
      delete from ${sql(table)} where id in (select id from ${sql(table)} where ${condition} limit ${limit})
      returning 1 as deleted`
    return rows.length
  })
}

/**
 * now() − `days` by the database's clock, as an ISO string: the kit's pools run with fetch_types off, so
 * a Date is neither read back nor sent as a parameter reliably (callers cast it: `${cutoff}::timestamptz`).
 */
export async function retentionCutoff(sql: Sql, days: number): Promise<string> {
  const [row] = await sql<{ cutoff: Date | string }[]>`select now() - make_interval(days => ${days}) as cutoff`
  return new Date(row!.cutoff).toISOString()
}
