/**
 * Append a row to sys_audit_logs. Requests pass themselves so ip and user agent are always filled; pass a
 * transaction as `db` to write the row with the change it records (both or neither).
 */
import type { FastifyRequest } from 'fastify'
import { auditLogs } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../db/host.js'

export interface AuditEntry {
  action: string
  actorUserId?: string | null
  tenantId?: string | null
  targetType?: string
  targetId?: string
  metadata?: Record<string, unknown>
}

export async function audit(db: Pick<HostDb, 'insert'>, entry: AuditEntry, req?: FastifyRequest): Promise<void> {
  await db.insert(auditLogs).values({
    action: entry.action,
    actorUserId: entry.actorUserId ?? null,
    tenantId: entry.tenantId ?? null,
    targetType: entry.targetType,
    targetId: entry.targetId,
    ip: req?.ip,
    userAgent: req?.headers['user-agent']?.slice(0, 512),
    metadata: entry.metadata ?? {},
  })
}
