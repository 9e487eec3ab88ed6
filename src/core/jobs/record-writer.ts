/**
 * Group commit for job record status changes.
 *
 * Every job writes its record at least twice (running, then completed or failed). One UPDATE and one
 * commit per write would make Postgres commits the ceiling of the whole worker, so changes to the same
 * database queue up while batches are in flight and go out together as one UPDATE … FROM
 * jsonb_to_recordset. Each caller still waits until its own change is committed; a lone change on an
 * idle system is sent at once, nothing waits on a timer.
 *
 * Order per record is kept: a change is never sent while an earlier change to the same record is in
 * flight, and changes to one record that meet in the queue merge into one (a short job's "running" and
 * "completed" often become a single write that sets started_at and finished_at together).
 */
import type { Sql } from '../db/connect.js'
import type { JobStatus } from './records.js'

/** One status change of one record; `result` is JSON text; a change without `error_log` keeps the old one. */
export interface Change {
  id: string
  status: JobStatus
  retry_count: number
  result?: string | null
  error_log?: string
}

/** What is sent: the last change, and whether the job was started on the way (sets started_at). */
interface Merged extends Change {
  started: boolean
}

interface Waiter {
  resolve: () => void
  reject: (err: unknown) => void
}

interface Queue {
  /** Insertion-ordered by record id; a record appears once. */
  pending: Map<string, { change: Merged; waiters: Waiter[] }>
  inFlightIds: Set<string>
  inFlight: number
}

const MAX_BATCH = 500
/** Batches in flight per database: one fills while another commits. */
const MAX_IN_FLIGHT = 2

function merge(earlier: Merged | undefined, later: Change): Merged {
  return {
    ...later,
    result: later.result !== undefined ? later.result : earlier?.result,
    error_log: later.error_log ?? earlier?.error_log,
    started: (earlier?.started ?? false) || later.status === 'running',
  }
}

export type ChangeWriter = (sql: Sql, change: Change) => Promise<void>

export function createChangeWriter(table: 'sys_jobs' | 'tenant_jobs'): ChangeWriter {
  const queues = new WeakMap<Sql, Queue>()

  // Committed without waiting for the WAL flush (synchronous_commit off for this statement's own implicit
  // transaction: set_config(…, true) lasts until its commit). The fsync was most of every job's wait (issue 14:
  // ~3–5 ms per commit against ~0.3 ms on a loaded machine). What a Postgres crash can lose is the last
  // fraction of a second of status changes, which leaves records behind BullMQ's state (pending or running),
  // exactly what the reconcile sweep repairs; record inserts, effect marks and everything else stay durable.
  // The id array is there for the planner: it estimates a function scan at 100 rows whatever its input,
  // and then prefers a sequential scan of a small-to-medium table (and may cache that generic plan as the
  // table grows); `id = any(array)` makes the primary key index the obvious path.
  const send = (sql: Sql, batch: Merged[]) => sql`
    update ${sql(table)} as j set
      status = r.status,
      retry_count = r.retry_count,
      started_at = case when r.started then coalesce(j.started_at, now()) else j.started_at end,
      finished_at = case when r.status in ('completed', 'failed') then now() when r.status = 'running' then null else j.finished_at end,
      result = case when r.status = 'completed' then r.result::jsonb else j.result end,
      error_log = coalesce(r.error_log, j.error_log),
      updated_at = now()
    from jsonb_to_recordset(${JSON.stringify(batch)}::jsonb)
      as r(id uuid, status text, retry_count int, result text, error_log text, started boolean),
      (select set_config('synchronous_commit', 'off', true)) as async_commit
    where j.id = r.id and j.id = any(${`{${batch.map((c) => c.id).join(',')}}`}::uuid[])`

  function kick(sql: Sql, q: Queue) {
    while (q.inFlight < MAX_IN_FLIGHT && q.pending.size > 0) {
      const batch: { change: Merged; waiters: Waiter[] }[] = []
      for (const [id, entry] of q.pending) {
        if (q.inFlightIds.has(id)) continue
        batch.push(entry)
        q.pending.delete(id)
        if (batch.length === MAX_BATCH) break
      }
      if (batch.length === 0) return // everything pending waits on its own record's batch in flight
      void flushBatch(sql, q, batch)
    }
  }

  async function flushBatch(sql: Sql, q: Queue, batch: { change: Merged; waiters: Waiter[] }[]) {
    q.inFlight++
    for (const { change } of batch) q.inFlightIds.add(change.id)
    try {
      await send(
        sql,
        batch.map((e) => e.change),
      )
      for (const e of batch) for (const w of e.waiters) w.resolve()
    } catch (err) {
      for (const e of batch) for (const w of e.waiters) w.reject(err)
    } finally {
      q.inFlight--
      for (const { change } of batch) q.inFlightIds.delete(change.id)
      kick(sql, q)
    }
  }

  return (sql, change) =>
    new Promise<void>((resolve, reject) => {
      let q = queues.get(sql)
      if (!q) {
        q = { pending: new Map(), inFlightIds: new Set(), inFlight: 0 }
        queues.set(sql, q)
      }
      const entry = q.pending.get(change.id)
      if (entry) {
        entry.change = merge(entry.change, change)
        entry.waiters.push({ resolve, reject })
      } else {
        q.pending.set(change.id, { change: merge(undefined, change), waiters: [{ resolve, reject }] })
      }
      kick(sql, q)
    })
}
