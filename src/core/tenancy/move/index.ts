/**
 * Moving tenants between locations (isolation modes; servers): the mover wired to this deployment, and the
 * `tenants.move` job that runs a recorded move on the worker. See mover.ts for the steps.
 *
 *   const move = await services.mover.start('acme', { target: { isolation: 'database' } })
 *   await services.tasks.submit('tenants.move', { tenantId: move.tenantId, moveId: move.id }, { id: move.id })
 *
 * or `npm run tenants -- move acme --isolation database` (inline, or `--queue`).
 */
import { Type } from 'typebox'
import type { Logger } from 'pino'
import type { Config } from '../../config.js'
import { connect, type Sql } from '../../db/connect.js'
import type { HostDatabase } from '../../db/host.js'
import { type JobContext, type Jobs, type JobSubmitter, systemJob, TenantIdSchema } from '../../jobs/registry.js'
import { Uuid } from '../../lib/schemas.js'
import { createTenantLocks } from '../lifecycle.js'
import { boundedMaintenanceUrl, type Provisioner } from '../provisioning.js'
import type { Catalog, PoolManager } from '../types.js'
import { MOVE_APPLICATION } from './copy.js'
import { eq } from 'drizzle-orm'
import { tenants } from '../../../../drizzle/host/schema.js'
import type { Locations } from './locations.js'
import { serverLocations } from './server-locations.js'
import { createMover, hopelessMove, type MoveFaults, type Mover, type MoveRequest } from './mover.js'
import type { DrainOptions } from './drain.js'

export type { Locations, MoveTarget, TenantLocation } from './locations.js'
export { moveFigures, type Mover, type MoveRequest } from './mover.js'

export interface TenantMover extends Mover {
  /** Record the move and queue the `tenants.move` job that runs it (job id = move id, so a repeat queues nothing new). */
  queue(idOrSlug: string, request: MoveRequest): Promise<{ moveId: string; jobId: string; tenantId: string }>
  close(): Promise<void>
}

export interface TenantMoverDeps {
  config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl' | 'tenantDbPrefix' | 'encryptionKeys'> & Partial<Pick<Config, 'provisioning'>>
  host: HostDatabase
  catalog: Pick<Catalog, 'invalidate' | 'get'>
  pools: Pick<PoolManager, 'evict'>
  provisioner: Pick<Provisioner, 'template' | 'shared' | 'servers' | 'placement'>
  tasks: Pick<JobSubmitter, 'submit'>
  logger: Logger
  /** Where locations live; default: the database servers of core_db_servers (server-locations.ts). */
  locations?: (admin: Sql) => Locations
  drain?: DrainOptions
  faults?: MoveFaults
}

export function createTenantMover(deps: TenantMoverDeps): TenantMover {
  const { config } = deps
  const maintenance = boundedMaintenanceUrl(config, config.provisioning?.statementTimeoutMs ?? 60_000)
  // Both connect on first use only: a process that never moves a tenant opens nothing.
  const admin: Sql = connect(maintenance, { max: 2, idleTimeoutS: 30, applicationName: MOVE_APPLICATION })
  const lockSql: Sql = connect(maintenance, { max: 1, idleTimeoutS: 60, applicationName: 'tenantkit-locks' })
  const locations =
    deps.locations?.(admin) ??
    serverLocations({
      servers: deps.provisioner.servers,
      prefix: config.tenantDbPrefix,
      templateInfo: deps.provisioner.template.info,
      shared: deps.provisioner.shared,
      async place(tenantId, isolation) {
        const [row] = await deps.host.db.select().from(tenants).where(eq(tenants.id, tenantId))
        if (!row) return undefined
        // In that mode already: it stays on its server (a move there is not needed).
        if (row.isolation === isolation) return row.server
        const { servers, placement } = deps.provisioner
        const load = (await servers.load(undefined, { sizes: placement.sizes })).filter((s) => s.status === 'active')
        return placement({ tenantId, slug: row.slug, planTier: row.planTier, isolation }, load)
      },
    })
  const mover = createMover({
    host: deps.host,
    catalog: deps.catalog,
    pools: deps.pools,
    keys: config.encryptionKeys,
    locations,
    locks: createTenantLocks(lockSql),
    logger: deps.logger,
    drain: deps.drain,
    faults: deps.faults,
  })
  return {
    ...mover,
    async queue(idOrSlug, request) {
      const move = await mover.start(idOrSlug, request)
      const job = await deps.tasks.submit('tenants.move', { tenantId: move.tenantId, moveId: move.id }, { id: move.id })
      await mover.attachJob(move.id, job.id)
      return { moveId: move.id, jobId: job.id, tenantId: move.tenantId }
    },
    async close() {
      await Promise.all([admin.end({ timeout: 5 }), lockSql.end({ timeout: 5 })])
    },
  }
}

export const MovePayload = Type.Object({ tenantId: TenantIdSchema, moveId: Uuid }, { additionalProperties: false })

export interface MoveJobDeps {
  mover: Pick<Mover, 'run'>
}

/**
 * Runs a recorded move from its recorded step. A failed attempt (TENANT_BUSY, a drain timeout, a source
 * that changed) is retried with backoff and resumes where it stopped; once retries are spent the move
 * stays running (writes paused if it was marked): run it again (`tenants move`) or abort it (`--abort`).
 */
export const tenantsMove = systemJob({
  payload: MovePayload,
  maxRetries: 6,
  backoff: { type: 'exponential', delayMs: 2000 },
  permanent: hopelessMove,
  async process(ctx: JobContext<MoveJobDeps>, p) {
    const m = await ctx.deps.mover.run(p.moveId)
    return { moveId: m.id, state: m.state, step: m.step, rows: m.rowsCopied }
  },
})

export const MOVE_JOBS = { 'tenants.move': tenantsMove }

declare module '../../jobs/registry.js' {
  interface JobTypes extends Jobs<typeof MOVE_JOBS> {}
}
