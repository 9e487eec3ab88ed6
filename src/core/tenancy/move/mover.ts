/**
 * Moving a tenant from its location to another one (shared ⇄ database, and with several servers from one
 * server to another): the steps, each recorded in core_tenant_moves before the next one starts, so a
 * move killed anywhere is run again from its recorded step and ends consistent with nothing lost.
 *
 *   prepare  the target made ready (a database cloned from the template; nothing for the shared database),
 *            then a first copy of the tenant's rows while its writes still go on. (Before mark: no pause.)
 *   mark     moving_since set: every process refuses the tenant's writes (503 TENANT_MOVING, reads go on)
 *            and hands out read-only handles; then the writes already under way are waited out (drain.ts).
 *   copy     the target brought up to the source in one target transaction, sending only the rows in key
 *            buckets that differ since the first copy (copy.ts syncTenant): the pause lasts a scan of the
 *            tenant's rows on both sides, not a copy. A conflict only a full copy resolves: a full copy.
 *   verify   row count and checksum of every table, source against target; a difference goes back to copy.
 *   switch   the source checked once more against what was verified, then in one host transaction the
 *            catalog row names the target and moving_since is cleared (the write pause ends here); caches
 *            invalidated in every process, the old pool drained and closed.
 *   cleanup  the old copy removed and checked gone: its database dropped, or its rows in the shared database
 *            deleted (verified none left).
 *   clear    the move recorded done and audited.
 *
 * Steps are idempotent: mark keeps its first timestamp, prepare treats an existing database as its own,
 * copy empties the target first, switch and clear write their step in the same transaction as their change.
 * One run at a time per tenant, with the lifecycle's tenant lock (a lifecycle run meanwhile: TENANT_BUSY).
 */
import { and, eq, inArray, sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import { uuidv7 } from 'uuidv7'
import { systemJobs, type TenantMove, type TenantMoveStep, tenantMoves, tenants } from '../../../../drizzle/host/schema.js'
import type { HostDatabase } from '../../db/host.js'
import { type AuditSource, audit } from '../../lib/audit.js'
import { decrypt, encrypt, type KeyRing } from '../../lib/crypto.js'
import { errorMessage } from '../../lib/error-log.js'
import { AppError, conflict, notFound, PG, pgCode } from '../../lib/errors.js'
import { isUuid } from '../../lib/uuid.js'
import { type TenantLocks, withDeadline } from '../lifecycle.js'
import type { Catalog, PoolManager } from '../types.js'
import { type Checksums, checksumDifferences, checksumTenant, clearTenant, copyTenant, type Endpoint, openEndpoint, syncTenant } from './copy.js'
import { isUnreachable } from '../pool-manager.js'
import { type DrainOptions, drainWriters } from './drain.js'
import type { Locations, MoveTarget, TenantLocation } from './locations.js'

export type RunnableStep = Exclude<TenantMoveStep, 'done'>
/** Prepare comes before mark: cloning the target's database needs no pause, so writes are refused only from mark to switch. */
export const MOVE_STEPS: readonly RunnableStep[] = ['prepare', 'mark', 'copy', 'verify', 'switch', 'cleanup', 'clear']

/** Test hooks: throw from one to simulate a crash before a step, or after its work but before it is recorded. */
export interface MoveFaults {
  beforeStep?: (step: RunnableStep, move: TenantMove) => void | Promise<void>
  afterStep?: (step: RunnableStep, move: TenantMove) => void | Promise<void>
}

export interface MoverDeps {
  host: HostDatabase
  catalog: Pick<Catalog, 'invalidate' | 'get'>
  pools: Pick<PoolManager, 'evict'>
  keys: readonly KeyRing[]
  locations: Locations
  /** The lifecycle's tenant locks: a move and a lifecycle run (suspend, delete, migrate) never overlap. */
  locks: TenantLocks
  logger: Pick<Logger, 'info' | 'warn' | 'error'>
  drain?: DrainOptions
  faults?: MoveFaults
}

export interface MoveRequest {
  target: MoveTarget
  requestedBy?: string | undefined
  origin?: AuditSource | undefined
}

export interface Mover {
  /**
   * Record a move of the tenant to `target` (nothing moves yet: run() does). The tenant's open move is
   * returned as is when it goes to the same target; 409 MOVE_IN_PROGRESS when it goes elsewhere,
   * MOVE_NOT_NEEDED when the tenant is there already, TENANT_NOT_MOVABLE when it is not active or
   * suspended or not on the target's migration version.
   */
  start(idOrSlug: string, request: MoveRequest): Promise<TenantMove>
  /** Run the move's remaining steps (resuming from its recorded step); a finished move is returned as is. */
  run(moveId: string): Promise<TenantMove>
  /** start + run. */
  moveTenant(idOrSlug: string, request: MoveRequest): Promise<TenantMove>
  /**
   * Give up a move that has not switched yet: the target's copy removed, writes resumed on the source,
   * the move recorded failed. Past the switch a move can only finish (409 MOVE_IN_PROGRESS).
   */
  abort(moveId: string, opts?: { actorUserId?: string | undefined }): Promise<TenantMove>
  get(moveId: string): Promise<TenantMove | undefined>
  /** The tenant's running move, if any. */
  openFor(tenantId: string): Promise<TenantMove | undefined>
  /** Set the move's job id (the queued job running it). */
  attachJob(moveId: string, jobId: string): Promise<void>
}

/** Figures of a finished move (CLI, bench). */
export function moveFigures(m: TenantMove) {
  const ms = (a: Date | null, b: Date | null) => (a && b ? b.getTime() - a.getTime() : undefined)
  return { rows: m.rowsCopied ?? 0, writePauseMs: ms(m.markedAt, m.switchedAt), totalMs: ms(m.createdAt, m.finishedAt) }
}

class StepSetBack extends Error {}

/**
 * The system jobs that delete a tenant (the tenants feature's `tenants.delete`, soft or hard): while one
 * is queued or running for a tenant, the tenant does not start a move (409 TENANT_NOT_MOVABLE).
 */
export const TENANT_DELETION_JOBS = ['tenants.delete'] as const

export function createMover(deps: MoverDeps): Mover {
  const { host, catalog, pools, keys, locations, locks, logger } = deps

  const from = (m: TenantMove): TenantLocation => ({
    isolation: m.fromIsolation,
    server: m.fromServer ?? undefined,
    dbName: m.fromDbName,
    dbUrl: decrypt(m.fromDbUrlEncrypted, keys),
  })
  const to = (m: TenantMove): TenantLocation => ({
    isolation: m.toIsolation,
    server: m.toServer ?? undefined,
    dbName: m.toDbName,
    dbUrl: decrypt(m.toDbUrlEncrypted, keys),
  })
  /** A connection to a location, scoped to the tenant where the location is shared. */
  const endpoint = (loc: TenantLocation, tenantId: string) => openEndpoint(loc.dbUrl, loc.isolation === 'shared' ? tenantId : undefined)
  async function using<T>(loc: TenantLocation, tenantId: string, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const ep = endpoint(loc, tenantId)
    try {
      return await fn(ep)
    } finally {
      await ep.close()
    }
  }

  /** Connections to the move's source and target, closed after `fn`. */
  const withEndpoints = <T>(m: TenantMove, fn: (source: Endpoint, target: Endpoint) => Promise<T>): Promise<T> =>
    using(from(m), m.tenantId, (source) => using(to(m), m.tenantId, (target) => fn(source, target)))

  async function get(moveId: string): Promise<TenantMove | undefined> {
    if (!isUuid(moveId)) return undefined
    const [m] = await host.db.select().from(tenantMoves).where(eq(tenantMoves.id, moveId))
    return m
  }
  async function openFor(tenantId: string): Promise<TenantMove | undefined> {
    const [m] = await host.db
      .select()
      .from(tenantMoves)
      .where(sql`${tenantMoves.tenantId} = ${tenantId} and ${tenantMoves.state} = 'running'`)
    return m
  }
  /** A deletion job of the tenant not finished yet (queued, running, or waiting for a retry). */
  async function deletionQueued(tenantId: string) {
    const [job] = await host.db
      .select({ id: systemJobs.id, status: systemJobs.status })
      .from(systemJobs)
      .where(and(eq(systemJobs.tenantId, tenantId), inArray(systemJobs.jobType, [...TENANT_DELETION_JOBS]), inArray(systemJobs.status, ['pending', 'running'])))
      .limit(1)
    return job
  }
  async function record(id: string, patch: Partial<typeof tenantMoves.$inferInsert>): Promise<TenantMove> {
    const [m] = await host.db
      .update(tenantMoves)
      .set({ ...patch, updatedAt: new Date() })
      .where(eq(tenantMoves.id, id))
      .returning()
    if (!m) throw notFound('MOVE_NOT_FOUND', `no move ${id} (its tenant was deleted?)`)
    return m
  }
  /** Every process reloads the tenant; `moving`: handles still leased turn read-only. Then our own pool goes. */
  async function announce(tenantId: string, moving: boolean) {
    await catalog.invalidate(tenantId, moving ? { moving: true } : undefined)
    // Closing our pool waits for its leases (a long job may hold one): bounded, the drain sees to the rest.
    await withDeadline(pools.evict(tenantId, { readOnly: moving }), deps.drain?.timeoutMs ?? 10_000, 'closing the tenant pool').catch(
      (err: unknown) => logger.warn({ tenantId, err: errorMessage(err) }, 'tenant move: the old pool is still closing'),
    )
  }
  const sameData = async (a: Checksums, m: TenantMove, what: string) => {
    const diff = checksumDifferences(a, m.verified ?? {})
    if (diff.length === 0) return
    await record(m.id, { step: 'copy', error: `${what}: ${diff.join(', ')} differ; copying again` })
    throw new StepSetBack(`tenant move ${m.id}: ${what}: ${diff.join(', ')} differ; it copies again on the next run`)
  }

  /** Each step returns what to record with its completion; switch and clear record themselves (with their change). */
  const STEPS: Record<RunnableStep, (m: TenantMove) => Promise<Partial<typeof tenantMoves.$inferInsert> | 'recorded'>> = {
    async mark(m) {
      // The pause starts here (writes are refused from the mark on), not when the writers have drained.
      const [marked] = await host.sql<{ since: string }[]>`
        update core_tenants set moving_since = coalesce(moving_since, now()), updated_at = now()
        where id = ${m.tenantId} returning moving_since as since`
      await announce(m.tenantId, true)
      const source = from(m)
      // Through a pooler (its own, or its server's: the catalog's record says) its idle server connections are not waited for (drain.ts).
      const pooled = (await catalog.get(m.tenantId))?.poolerUrl !== undefined
      const drained = await using(source, m.tenantId, (ep) => drainWriters(ep, source, { logger, ...deps.drain, pooled }))
      logger.info({ tenantId: m.tenantId, moveId: m.id, ...drained }, 'tenant move: writes paused and drained')
      // (host.sql reads timestamps as text, as drizzle's driver set it up.)
      return { markedAt: m.markedAt ?? (marked ? new Date(marked.since) : new Date()) }
    },
    async prepare(m) {
      await locations.prepare(to(m))
      // The bulk of the copy, before the pause; copy (in the pause) sends what changed meanwhile.
      await withEndpoints(m, (source, target) => copyTenant(source, target))
      return {}
    },
    async copy(m) {
      const copied = await withEndpoints(m, async (source, target) => {
        try {
          const synced = await syncTenant(source, target)
          logger.info({ tenantId: m.tenantId, moveId: m.id, rows: synced.total, sent: synced.sent, deleted: synced.deleted }, 'tenant move: target synced')
          return synced
        } catch (err) {
          if (isUnreachable(err)) throw err
          logger.warn({ tenantId: m.tenantId, moveId: m.id, err: errorMessage(err) }, 'tenant move: sync failed; copying in full')
          return copyTenant(source, target)
        }
      })
      return { rowsCopied: copied.total }
    },
    async verify(m) {
      const [a, b] = await Promise.all([using(from(m), m.tenantId, checksumTenant), using(to(m), m.tenantId, checksumTenant)])
      await sameData(b, { ...m, verified: a }, 'the target does not match the source')
      return { verified: a }
    },
    async switch(m) {
      // A write that slipped past the pause (a process that missed the invalidation) shows here: copy again.
      await sameData(await using(from(m), m.tenantId, checksumTenant), m, 'the source changed since it was verified')
      const target = to(m)
      await host.db.transaction(async (tx) => {
        await tx
          .update(tenants)
          .set({
            // Several servers (serverLocations): the catalog names the new server.
            ...(target.server !== undefined ? { server: target.server } : {}),
            isolation: target.isolation,
            dbName: target.dbName,
            dbUrlEncrypted: encrypt(target.dbUrl, keys),
            poolerUrlEncrypted: null,
            movingSince: null,
            updatedAt: new Date(),
          })
          .where(eq(tenants.id, m.tenantId))
        await tx
          .update(tenantMoves)
          .set({ step: 'cleanup', switchedAt: new Date(), error: null, updatedAt: new Date() })
          .where(eq(tenantMoves.id, m.id))
      })
      await announce(m.tenantId, false)
      return 'recorded'
    },
    async cleanup(m) {
      // Again: a run that died right after the switch's commit may not have told the other processes.
      await announce(m.tenantId, false)
      const source = from(m)
      const [row] = await host.db.select().from(tenants).where(eq(tenants.id, m.tenantId))
      if (row && row.isolation === source.isolation && row.dbName === source.dbName && decrypt(row.dbUrlEncrypted, keys) === source.dbUrl) {
        throw new Error(`tenant move ${m.id}: the catalog still names the source; refusing to remove it`)
      }
      if (source.isolation === 'database') {
        // Readers that resolved the tenant before the switch finish on the old copy first (bounded).
        await using(source, m.tenantId, (ep) => drainWriters(ep, source, { ...deps.drain, readers: true, logger })).catch(
          (err: unknown) => {
            // Already gone (a run that died after the drop): nothing to wait for.
            if (pgCode(err) !== PG.invalidCatalogName) throw err
          },
        )
        await locations.dropDatabase(source)
        if (await locations.databaseExists(source)) throw new Error(`tenant move ${m.id}: ${source.dbName} still exists after the drop`)
        logger.info({ tenantId: m.tenantId, moveId: m.id, database: source.dbName }, 'tenant move: old database dropped')
      } else {
        const deleted = await using(source, m.tenantId, clearTenant)
        logger.info({ tenantId: m.tenantId, moveId: m.id, deleted }, 'tenant move: old shared rows deleted')
      }
      return {}
    },
    async clear(m) {
      await host.db.transaction(async (tx) => {
        await tx.update(tenants).set({ movingSince: null }).where(sql`${tenants.id} = ${m.tenantId} and ${tenants.movingSince} is not null`)
        const finishedAt = new Date()
        await tx
          .update(tenantMoves)
          .set({ state: 'done', step: 'done', finishedAt, error: null, updatedAt: finishedAt })
          .where(eq(tenantMoves.id, m.id))
        const figures = moveFigures({ ...m, finishedAt })
        await audit(tx, {
          action: 'tenant.moved',
          actorUserId: m.requestedBy,
          tenantId: m.tenantId,
          targetType: 'tenant',
          targetId: m.tenantId,
          metadata: { moveId: m.id, from: m.fromIsolation, to: m.toIsolation, fromServer: m.fromServer, toServer: m.toServer, ...figures },
        })
      })
      await catalog.invalidate(m.tenantId)
      return 'recorded'
    },
  }

  async function run(moveId: string): Promise<TenantMove> {
    let m = await get(moveId)
    if (!m) throw notFound('MOVE_NOT_FOUND', `no move ${moveId}`)
    if (m.state !== 'running') return m
    if (!(await locks.acquire(m.tenantId)))
      throw conflict('TENANT_BUSY', `another operation on tenant ${m.tenantId} is running; the move goes on when it has finished`)
    try {
      // Read again under the lock: another run may have moved it on meanwhile.
      m = (await get(moveId))!
      const started = performance.now()
      while (m.state === 'running' && m.step !== 'done') {
        const step = m.step as RunnableStep
        try {
          await deps.faults?.beforeStep?.(step, m)
          const done = await STEPS[step](m)
          await deps.faults?.afterStep?.(step, m)
          const next = MOVE_STEPS[MOVE_STEPS.indexOf(step) + 1]
          m = done === 'recorded' ? (await get(moveId))! : await record(m.id, { ...done, step: next ?? 'done', error: null })
        } catch (err) {
          if (!(err instanceof StepSetBack)) {
            await record(m.id, { error: `${step}: ${errorMessage(err)}` }).catch((recordErr: unknown) =>
              logger.warn({ moveId, err: errorMessage(recordErr) }, 'tenant move: recording the failure failed'),
            )
          }
          logger.error({ tenantId: m.tenantId, moveId, step, err: errorMessage(err) }, 'tenant move step failed; the move resumes from it')
          throw err
        }
      }
      logger.info({ tenantId: m.tenantId, moveId, ms: Math.round(performance.now() - started), ...moveFigures(m) }, 'tenant moved')
      return m
    } finally {
      await locks
        .release(m.tenantId)
        .catch((err: unknown) => logger.warn({ moveId, err: errorMessage(err) }, 'releasing the tenant lock failed'))
    }
  }

  /** The tenant's open move when it goes where the request asks (a request naming no server matches any); 409 otherwise. */
  function sameTargetOrConflict(open: TenantMove, slug: string, request: MoveRequest): TenantMove {
    const same = open.toIsolation === request.target.isolation && (request.target.server === undefined || (open.toServer ?? undefined) === request.target.server)
    if (same) return open
    throw conflict('MOVE_IN_PROGRESS', `tenant "${slug}" is already moving to ${open.toIsolation}${open.toServer ? ` on ${open.toServer}` : ''}`)
  }

  async function start(idOrSlug: string, request: MoveRequest): Promise<TenantMove> {
    const where = isUuid(idOrSlug) ? eq(tenants.id, idOrSlug.toLowerCase()) : eq(tenants.slug, idOrSlug)
    const [found] = await host.db.select().from(tenants).where(where)
    if (!found || found.status === 'deleted') throw notFound('TENANT_NOT_FOUND', `no tenant "${idOrSlug}"`)
    // Asked again while its move runs (the run holds the lock): the open move, as startLocked answers it.
    const open = await openFor(found.id)
    if (open) return sameTargetOrConflict(open, found.slug, request)
    // The tenant lock, as a lifecycle run takes it: a deletion under way (it holds the lock) refuses the
    // move, and a deletion that comes later finds the move recorded (lifecycle: MOVE_IN_PROGRESS).
    if (!(await locks.acquire(found.id)))
      throw conflict('TENANT_BUSY', `another operation on tenant "${found.slug}" is running (a deletion, another move); try again when it has finished`)
    try {
      return await startLocked(found.id, request)
    } finally {
      await withDeadline(locks.release(found.id), 5000, 'releasing the tenant lock').catch((err: unknown) =>
        logger.warn({ tenantId: found.id, err: errorMessage(err) }, 'releasing the tenant lock failed'),
      )
    }
  }

  async function startLocked(tenantId: string, request: MoveRequest): Promise<TenantMove> {
    // Read again under the lock: a run that held it may have changed or removed the tenant.
    const [row] = await host.db.select().from(tenants).where(eq(tenants.id, tenantId))
    if (!row || row.status === 'deleted') throw notFound('TENANT_NOT_FOUND', `no tenant "${tenantId}"`)
    const open = await openFor(row.id)
    if (open) return sameTargetOrConflict(open, row.slug, request)
    if (row.status !== 'active' && row.status !== 'suspended')
      throw conflict('TENANT_NOT_MOVABLE', `tenant "${row.slug}" is ${row.status}; only active or suspended tenants move`)
    const deletion = await deletionQueued(row.id)
    if (deletion)
      throw conflict('TENANT_NOT_MOVABLE', `tenant "${row.slug}" is being deleted (job ${deletion.id}, ${deletion.status}); it does not move`)
    const source = locations.current({ ...row, dbUrl: decrypt(row.dbUrlEncrypted, keys) })
    const target = await locations.resolve(row.id, request.target)
    if (source.isolation === target.isolation && source.server === target.server && source.dbName === target.dbName) {
      throw conflict('MOVE_NOT_NEEDED', `tenant "${row.slug}" is already in ${target.isolation} isolation there`)
    }
    const version = locations.version(target.isolation)
    if (row.migrationVersion !== version || row.migrationStatus !== 'current') {
      throw conflict(
        'TENANT_NOT_MOVABLE',
        `tenant "${row.slug}" is on migration ${row.migrationVersion ?? 'none'} (${row.migrationStatus}), the target on ${version}: run tenants migrate first`,
      )
    }
    try {
      return await host.db.transaction(async (tx) => {
        const [m] = await tx
          .insert(tenantMoves)
          .values({
            id: uuidv7(),
            tenantId: row.id,
            fromIsolation: source.isolation,
            fromServer: source.server ?? null,
            fromDbName: source.dbName,
            fromDbUrlEncrypted: encrypt(source.dbUrl, keys),
            toIsolation: target.isolation,
            toServer: target.server ?? null,
            toDbName: target.dbName,
            toDbUrlEncrypted: encrypt(target.dbUrl, keys),
            requestedBy: request.requestedBy ?? null,
            step: MOVE_STEPS[0],
          })
          .returning()
        await audit(
          tx,
          {
            action: 'tenant.move_requested',
            actorUserId: request.requestedBy ?? null,
            tenantId: row.id,
            targetType: 'tenant',
            targetId: row.id,
            metadata: {
              moveId: m!.id,
              from: source.isolation,
              to: target.isolation,
              fromServer: source.server ?? null,
              toServer: target.server ?? null,
            },
          },
          request.origin,
        )
        return m!
      })
    } catch (err) {
      // Two starts at once: the other one's move is the tenant's open move.
      if (pgCode(err instanceof Error ? (err.cause ?? err) : err) !== PG.uniqueViolation) throw err
      const other = await openFor(row.id)
      if (other) return sameTargetOrConflict(other, row.slug, request)
      throw conflict('MOVE_IN_PROGRESS', `tenant "${row.slug}" is already moving`)
    }
  }

  async function abort(moveId: string, opts: { actorUserId?: string | undefined } = {}): Promise<TenantMove> {
    const m = await get(moveId)
    if (!m) throw notFound('MOVE_NOT_FOUND', `no move ${moveId}`)
    if (m.state !== 'running') return m
    if (!(await locks.acquire(m.tenantId)))
      throw conflict('TENANT_BUSY', `the move of tenant ${m.tenantId} is running; abort it once that run has stopped`)
    try {
      const now = (await get(moveId))!
      if (now.state !== 'running') return now
      if (MOVE_STEPS.indexOf(now.step as RunnableStep) > MOVE_STEPS.indexOf('switch') || now.step === 'done') {
        throw conflict(
          'MOVE_IN_PROGRESS',
          `the move ${moveId} has switched the tenant to its new location: it can only finish (run it again)`,
        )
      }
      const target = to(now)
      const [row] = await host.db.select().from(tenants).where(eq(tenants.id, now.tenantId))
      // A server move keeps the database's name: the server tells the target from the source.
      if (row && row.dbName === target.dbName && row.isolation === target.isolation && (target.server === undefined || row.server === target.server))
        throw new Error(`move ${moveId}: the catalog names the target; refusing to remove it`)
      // The target's partial copy: nobody reads it (the catalog never named it).
      if (target.isolation === 'database') await locations.dropDatabase(target)
      else
        await using(target, now.tenantId, clearTenant).catch((err: unknown) => {
          if (pgCode(err) !== PG.invalidCatalogName) throw err
        })
      let done: TenantMove | undefined
      await host.db.transaction(async (tx) => {
        await tx.update(tenants).set({ movingSince: null }).where(eq(tenants.id, now.tenantId))
        ;[done] = await tx
          .update(tenantMoves)
          .set({
            state: 'failed',
            finishedAt: new Date(),
            error: `aborted at ${now.step}${now.error ? ` (last error: ${now.error})` : ''}`,
            updatedAt: new Date(),
          })
          .where(eq(tenantMoves.id, moveId))
          .returning()
        await audit(tx, {
          action: 'tenant.move_aborted',
          actorUserId: opts.actorUserId ?? null,
          tenantId: now.tenantId,
          targetType: 'tenant',
          targetId: now.tenantId,
          metadata: { moveId, step: now.step, to: now.toIsolation },
        })
      })
      await catalog.invalidate(now.tenantId)
      return done!
    } finally {
      await locks.release(m.tenantId).catch(() => {})
    }
  }

  return {
    start,
    run,
    async moveTenant(idOrSlug, request) {
      return run((await start(idOrSlug, request)).id)
    },
    abort,
    get,
    openFor,
    async attachJob(moveId, jobId) {
      await host.db.update(tenantMoves).set({ jobId }).where(eq(tenantMoves.id, moveId))
    },
  }
}

/** Retrying cannot help: the move or its tenant is gone. */
export const hopelessMove = (err: unknown) => err instanceof AppError && (err.code === 'MOVE_NOT_FOUND' || err.code === 'TENANT_NOT_FOUND')
