/**
 * The one writer of sys_audit_logs rows. Requests pass themselves so ip and user agent are always filled
 * (code acting for a request it no longer holds passes its AuditSource); pass a transaction as `db` to write
 * the row with the change it records (both or neither): a drizzle one, or a postgres.js one that code
 * outside drizzle opened (the Stripe webhook). A request made with a platform API key (`req.actorApiKeyId`,
 * set by the admin guard) names that key on every row it writes, beside its creator as the actor.
 */
import type { FastifyRequest } from 'fastify'
import { auditLogs } from '../../../drizzle/host/schema.js'
import { type HostDb, hostDbOn, type RawSql } from '../db/host.js'

export interface AuditEntry {
  action: string
  actorUserId?: string | null
  /** The platform API key that acted (default: the request's `actorApiKeyId`). */
  actorApiKeyId?: string | null
  tenantId?: string | null
  targetType?: string
  targetId?: string
  metadata?: Record<string, unknown>
}

/** Where the action came from when it runs outside the request (a lifecycle run, a job): the request's ip and user agent. */
export interface AuditSource {
  ip?: string | undefined
  userAgent?: string | undefined
}

/** The ip and user agent of a request, to carry into work done on its behalf later (a job's payload). */
export const auditSource = (req: FastifyRequest): AuditSource => ({ ip: req.ip, userAgent: req.headers['user-agent']?.slice(0, 512) })

declare module 'fastify' {
  interface FastifyRequest {
    /** The platform API key (tka_…) this request was authenticated by, if any: audit rows name it. */
    actorApiKeyId?: string | null
  }
}

export type AuditDb = Pick<HostDb, 'insert'> | RawSql

export async function audit(db: AuditDb, entry: AuditEntry, from?: FastifyRequest | AuditSource): Promise<void> {
  await auditInsert(db, entry, from)
    // Prepared: an ad-hoc drizzle insert is sent unprepared, a Describe round trip before every audit row.
    .prepare('tk_audit_insert')
    .execute()
}

/** The audit row's insert, not yet sent (audit() sends it; CatalogWrites.update pipelines it with its update). */
export function auditInsert(db: AuditDb, entry: AuditEntry, from?: FastifyRequest | AuditSource) {
  const request = from && 'raw' in from ? from : undefined
  const source = request ? auditSource(request) : (from as AuditSource | undefined)
  return (typeof db === 'function' ? hostDbOn(db) : db).insert(auditLogs).values({
    action: entry.action,
    actorUserId: entry.actorUserId ?? null,
    actorApiKeyId: entry.actorApiKeyId ?? request?.actorApiKeyId ?? null,
    tenantId: entry.tenantId ?? null,
    targetType: entry.targetType,
    targetId: entry.targetId,
    ip: source?.ip,
    userAgent: source?.userAgent?.slice(0, 512),
    metadata: entry.metadata ?? {},
  })
}
