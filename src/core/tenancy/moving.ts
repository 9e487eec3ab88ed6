/**
 * Whether a tenant is moving (an open core_tenant_moves row): what the lifecycle's deletions and fleet
 * migrations check before they touch a tenant whose data a move is copying (409 MOVE_IN_PROGRESS).
 */
import { and, eq } from 'drizzle-orm'
import { type TenantMove, tenantMoves } from '../../../drizzle/host/schema.js'
import type { HostDatabase } from '../db/host.js'
import { conflict } from '../lib/errors.js'

/** The tenant's open move (core_tenant_moves, state running), if any. */
export async function openMoveOf(host: HostDatabase, tenantId: string): Promise<Pick<TenantMove, 'id' | 'step' | 'toIsolation' | 'toServer'> | undefined> {
  const [move] = await host.db
    .select({ id: tenantMoves.id, step: tenantMoves.step, toIsolation: tenantMoves.toIsolation, toServer: tenantMoves.toServer })
    .from(tenantMoves)
    .where(and(eq(tenantMoves.tenantId, tenantId), eq(tenantMoves.state, 'running')))
  return move
}

/** 409 MOVE_IN_PROGRESS: what `what` (an event, a request) would do to a tenant while it moves. */
export function movingConflict(slug: string, what: string, move: Pick<TenantMove, 'id' | 'step' | 'toIsolation' | 'toServer'>) {
  return conflict(
    'MOVE_IN_PROGRESS',
    `tenant "${slug}" is moving to ${move.toIsolation}${move.toServer ? ` on ${move.toServer}` : ''} (move ${move.id}, at ${move.step}); ` +
      `"${what}" is refused until the move has finished, or has been aborted (tenants move ${slug} --abort)`,
  )
}

