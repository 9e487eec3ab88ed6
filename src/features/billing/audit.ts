/**
 * Billing's audit rows, written inside the caller's transaction (postgres.js) so a rolled-back
 * webhook leaves no trace. Every action starts with `billing.`.
 */
import type postgres from 'postgres'
import { uuidv7 } from 'uuidv7'

export type Tx = postgres.TransactionSql

export interface BillingAudit {
  action: `billing.${string}`
  tenantId: string | null
  actorUserId?: string | null
  targetType?: string
  targetId?: string
  metadata?: Record<string, unknown>
}

export async function writeBillingAudit(tx: Tx, a: BillingAudit): Promise<void> {
  await tx`
    insert into sys_audit_logs (id, actor_user_id, tenant_id, action, target_type, target_id, metadata)
    values (${uuidv7()}, ${a.actorUserId ?? null}, ${a.tenantId}, ${a.action}, ${a.targetType ?? null}, ${a.targetId ?? null},
            ${JSON.stringify(a.metadata ?? {})}::jsonb)`
}

/**
 * host.sql is the client drizzle wraps, and drizzle makes its timestamp and json serializers pass values
 * through untouched: so billing's raw SQL sends timestamps as ISO text (`iso`, src/core/lib/dates.ts) and JSON as text, and reads
 * timestamps back as text (or Date, on a client drizzle never touched).
 */
export const asDate = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(String(v)))
