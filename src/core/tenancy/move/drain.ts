/**
 * Waiting out the writers of a tenant's old copy once it is marked moving. From the mark on, every
 * process hands out read-only handles for the tenant (pool manager: a read-only URL; a shared handle
 * still leased turns read-only on the invalidation); what is left are writes already under way:
 *
 *   database location  the tenant's own database: wait until no read-write connection to it is left
 *                      (pools close once their leases end), then end the stragglers (pg_terminate_backend:
 *                      a pool no process has closed, a forgotten psql session). Read-only connections stay.
 *   shared location    other tenants write there too: wait a moment for the invalidation to reach every
 *                      process, then for every transaction begun before that to end.
 *
 * pg_stat_activity shows another role's sessions only partly, so this runs as the role the location's
 * writers use (the endpoint's own URL).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { READ_ONLY_APPLICATION } from '../pool-manager.js'
import { type Endpoint, MOVE_APPLICATION } from './copy.js'
import type { TenantLocation } from './locations.js'

export interface DrainOptions {
  /** How long writers get to finish (default 10 s). */
  timeoutMs?: number
  /** Shared location: how long the invalidation gets to reach every process (default 250 ms). */
  settleMs?: number
  logger?: Pick<Logger, 'warn'>
  /** A database location about to be dropped: wait out readers too (every connection but the move's own). */
  readers?: boolean
  /**
   * The tenant is reached through a transaction pooler (its catalog row has a pooler URL): the pooler's idle
   * server connections never close on their own (server_idle_timeout), so they are not waited for: once no
   * read-write connection is active or in a transaction, the idle ones are ended at once (PgBouncer opens new
   * ones as needed). Without this the drain ran to its timeout: writes refused ~11 s instead of ~1 s.
   */
  pooled?: boolean
}

export interface DrainResult {
  waitedMs: number
  /** Read-write connections ended after the timeout (database locations). */
  terminated: number
}

const POLL_MS = 50

export async function drainWriters(ep: Endpoint, location: TenantLocation, opts: DrainOptions = {}): Promise<DrainResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const started = performance.now()
  const deadline = started + timeoutMs
  const waited = () => Math.round(performance.now() - started)

  if (location.isolation === 'database') {
    // Names no connection when readers count too.
    const readers = opts.readers ? MOVE_APPLICATION : READ_ONLY_APPLICATION
    const writers = () =>
      ep.sql<{ pid: number; state: string | null }[]>`
        select pid, state from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
          and application_name not in (${readers}, ${MOVE_APPLICATION})`
    const endIdle = async () => {
      const ended = await ep.sql<{ ok: boolean }[]>`
        select pg_terminate_backend(pid) as ok from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend' and state = 'idle'
          and application_name not in (${readers}, ${MOVE_APPLICATION})`
      return ended.filter((e) => e.ok).length
    }
    for (;;) {
      const left = await writers()
      if (left.length === 0) return { waitedMs: waited(), terminated: 0 }
      if (opts.pooled && left.every((w) => w.state === 'idle')) return { waitedMs: waited(), terminated: await endIdle() }
      if (performance.now() >= deadline) {
        const ended = await ep.sql<{ ok: boolean }[]>`
          select pg_terminate_backend(pid) as ok from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
            and application_name not in (${readers}, ${MOVE_APPLICATION})`
        const terminated = ended.filter((e) => e.ok).length
        opts.logger?.warn(
          { database: location.dbName, terminated },
          'tenant move: read-write connections still open after the drain timeout were ended',
        )
        return { waitedMs: waited(), terminated }
      }
      await sleep(POLL_MS)
    }
  }

  await sleep(opts.settleMs ?? 250)
  const [{ t } = { t: '' }] = await ep.sql<{ t: string }[]>`select clock_timestamp()::text as t`
  for (;;) {
    const [row] = await ep.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and xact_start < ${t}::timestamptz
        and application_name not in (${READ_ONLY_APPLICATION}, ${MOVE_APPLICATION})`
    if (row!.n === 0) return { waitedMs: waited(), terminated: 0 }
    if (performance.now() >= deadline) {
      throw new Error(
        `tenant move: ${row!.n} transaction(s) begun before the mark are still open on ${location.dbName} after ${timeoutMs} ms`,
      )
    }
    await sleep(POLL_MS)
  }
}
