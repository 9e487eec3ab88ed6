/**
 * Billing's audit rows, through the one audit writer (core/lib/audit.ts), in the caller's transaction so
 * a rolled-back webhook leaves no trace. Every action starts with `billing.`.
 */
import type postgres from 'postgres'
import type { AuditDb } from '../../core/lib/audit.js'
import { audit } from '../../core/lib/audit.js'

/** The postgres.js transaction the Stripe webhook opens (webhooks.ts); billing's own code uses drizzle's. */
export type Tx = postgres.TransactionSql

export interface BillingAudit {
  action: `billing.${string}`
  tenantId: string | null
  actorUserId?: string | null
  targetType?: string
  targetId?: string
  metadata?: Record<string, unknown>
}

export async function writeBillingAudit(db: AuditDb, a: BillingAudit): Promise<void> {
  await audit(db, a)
}

/**
 * host.sql is the client drizzle wraps, and drizzle makes its timestamp and json serializers pass values
 * through untouched: so raw SQL on it sends timestamps as ISO text (`iso`, src/core/lib/dates.ts) and JSON as text, and reads
 * timestamps back as text (or Date, on a client drizzle never touched). Drizzle queries return Dates.
 */
export const asDate = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(String(v)))
