/**
 * Group commit for job record status changes.
 *
 * Every job writes its record at least twice (running, then completed or failed). One UPDATE and one
 * commit per write would make Postgres commits the ceiling of the whole worker, so changes to the same
 * database queue up while batches are in flight and go out together as one UPDATE … FROM
 * jsonb_to_recordset. A caller's promise settles when its own change is committed (the processor waits on
 * some and not on others: processor.ts); a lone change on an idle system goes out at the end of the
 * event-loop turn it was made in, nothing waits on a timer.
 *
 * Order per record is kept: a change is never sent while an earlier change to the same record is in
 * flight (it waits aside, blocked, and is ready again when that batch is done), and changes to one
 * record that meet in the queue merge into one (a short job's "running" and "completed" usually become a
 * single write that sets started_at and finished_at together).
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

/** A record's change waiting to be sent, with the callers waiting on it. */
interface Entry {
  change: Merged
  waiters: Waiter[]
}

interface Queue {
  /** Changes ready to go, insertion-ordered by record id; a record appears once. */
  ready: Map<string, Entry>
  /** Changes to records that have a batch in flight: they join `ready` when that batch is done. */
  blocked: Map<string, Entry>
  inFlightIds: Set<string>
  inFlight: number
  /** A send is scheduled for the end of this event-loop turn. */
  scheduled: boolean
}

const MAX_BATCH = 500
/** Batches in flight per database: one fills while another commits. */
const MAX_IN_FLIGHT = 2

/** A later change of the same record folded into the one still waiting (in place: one object per record). */
function merge(into: Merged, later: Change): void {
  into.status = later.status
  into.retry_count = later.retry_count
  if (later.result !== undefined) into.result = later.result
  if (later.error_log !== undefined) into.error_log = later.error_log
  if (later.status === 'running') into.started = true
}

const fresh = (c: Change): Merged => ({
  id: c.id,
  status: c.status,
  retry_count: c.retry_count,
  result: c.result,
  error_log: c.error_log,
  started: c.status === 'running',
})

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

  // Sent at the end of the event-loop turn, not at once: the changes of every job that moved in this turn
  // (a burst of BullMQ replies read together) share one statement, and a short job's "running" and
  // "completed", made in the same turn, become one row.
  function schedule(sql: Sql, q: Queue) {
    if (q.scheduled) return
    q.scheduled = true
    setImmediate(() => {
      q.scheduled = false
      kick(sql, q)
    })
  }

  function kick(sql: Sql, q: Queue) {
    while (q.inFlight < MAX_IN_FLIGHT && q.ready.size > 0) {
      const batch: Entry[] = []
      for (const [id, entry] of q.ready) {
        batch.push(entry)
        q.ready.delete(id)
        if (batch.length === MAX_BATCH) break
      }
      void flushBatch(sql, q, batch)
    }
  }

  async function flushBatch(sql: Sql, q: Queue, batch: Entry[]) {
    q.inFlight++
    const changes = batch.map((e) => e.change)
    for (const change of changes) q.inFlightIds.add(change.id)
    try {
      await send(sql, changes)
      for (const e of batch) for (const w of e.waiters) w.resolve()
    } catch (err) {
      for (const e of batch) for (const w of e.waiters) w.reject(err)
    } finally {
      q.inFlight--
      for (const { id } of changes) {
        q.inFlightIds.delete(id)
        const next = q.blocked.get(id)
        if (next) {
          q.blocked.delete(id)
          q.ready.set(id, next)
        }
      }
      kick(sql, q)
    }
  }

  return (sql, change) =>
    new Promise<void>((resolve, reject) => {
      let q = queues.get(sql)
      if (!q) {
        q = { ready: new Map(), blocked: new Map(), inFlightIds: new Set(), inFlight: 0, scheduled: false }
        queues.set(sql, q)
      }
      const waiting = q.inFlightIds.has(change.id) ? q.blocked : q.ready
      const entry = waiting.get(change.id)
      if (entry) {
        merge(entry.change, change)
        entry.waiters.push({ resolve, reject })
      } else {
        waiting.set(change.id, { change: fresh(change), waiters: [{ resolve, reject }] })
      }
      if (waiting === q.ready) schedule(sql, q)
    })
}
