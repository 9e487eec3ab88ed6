/**
 * Draining a database server: it takes no new tenants (status 'draining', placement skips it), and each
 * tenant on it gets a move to the server the placement policy picks among the active ones, with the move's
 * brief write pause and verification: a database tenant to another server's database, a shared tenant to
 * another server's shared database (skipped, with the reason, when no other server holds one). Moves are recorded and queued as `tenants.move` jobs (the
 * worker runs them, one at a time per tenant, resumable), or run here one after another (`inline`).
 * Running it again queues only what is left: a tenant with its move open keeps that move.
 */
import { asc, eq } from 'drizzle-orm'
import { tenants } from '../../../../drizzle/host/schema.js'
import type { HostDatabase } from '../../db/host.js'
import { errorMessage } from '../../lib/error-log.js'
import type { Provisioner } from '../provisioning.js'
import type { TenantMover } from './index.js'

export interface DrainDeps {
  host: HostDatabase
  provisioner: Pick<Provisioner, 'servers' | 'placement'>
  mover: Pick<TenantMover, 'queue' | 'moveTenant'>
}

export interface DrainResult {
  /** Tenants whose move was queued (or, inline, done), with the server each goes to. */
  moved: { slug: string; to: string; moveId: string; jobId?: string | undefined }[]
  /** Tenants left where they are, and why (soft-deleted, not active, no room anywhere, no other shared database, a failed move). */
  skipped: { slug: string; reason: string }[]
}

export async function drainServer(deps: DrainDeps, name: string, opts: { inline?: boolean } = {}): Promise<DrainResult> {
  const { servers, placement } = deps.provisioner
  await servers.get(name) // 404 SERVER_NOT_FOUND before anything changes
  await servers.setStatus(name, 'draining')
  const rows = await deps.host.db.select().from(tenants).where(eq(tenants.server, name)).orderBy(asc(tenants.slug))
  // Counted as the moves are planned, so one drain spreads its tenants instead of sending all to the emptiest server.
  const load = (await servers.load(undefined, { sizes: placement.sizes })).filter((s) => s.status === 'active' && s.name !== name)
  const result: DrainResult = { moved: [], skipped: [] }
  for (const row of rows) {
    // Its database (or its rows) stays until it is restored (then moved) or hard-deleted: the server is not empty until then.
    if (row.deletedAt !== null) {
      result.skipped.push({ slug: row.slug, reason: 'soft-deleted: its data stays here until it is restored (then moved) or deleted with --hard' })
      continue
    }
    if (row.status !== 'active' && row.status !== 'suspended') {
      result.skipped.push({ slug: row.slug, reason: `${row.status}: only active or suspended tenants move` })
      continue
    }
    const isolation = row.isolation
    const to = placement({ tenantId: row.id, slug: row.slug, planTier: row.planTier, isolation }, load)
    const target = load.find((s) => s.name === to)
    if (!target) {
      result.skipped.push({
        slug: row.slug,
        reason: isolation === 'shared' ? 'shared tenant: no other active server holds a shared database' : 'no active server has room',
      })
      continue
    }
    const request = { target: { isolation, server: target.name } }
    try {
      if (opts.inline) {
        const m = await deps.mover.moveTenant(row.id, request)
        result.moved.push({ slug: row.slug, to: target.name, moveId: m.id })
      } else {
        const q = await deps.mover.queue(row.id, request)
        result.moved.push({ slug: row.slug, to: target.name, moveId: q.moveId, jobId: q.jobId })
      }
      if (isolation === 'shared') target.sharedTenants++
      else target.tenants++
    } catch (err) {
      result.skipped.push({ slug: row.slug, reason: errorMessage(err) })
    }
  }
  return result
}
