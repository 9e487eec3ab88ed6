/**
 * What a realtime client receives: the domain events other features publish (src/core/events), each
 * with the least role that sees it (the routes that show the same data: members and projects to every
 * member, the subscription to admins), in one wire shape for SSE and WebSocket alike:
 *
 *   { "seq": "1764720000000-0", "id": "<uuidv7>", "type": "project.created", "occurredAt": "…", "data": {…} }
 *
 * `seq` is the event's id in its tenant's replay buffer (a Redis stream id: milliseconds-sequence,
 * increasing per tenant), the SSE `id:` a client resumes from with Last-Event-ID.
 */
import type { DomainEventType } from '../../core/events/domain-events.js'
import { ROLE_LEVEL, type Role } from '../../core/tenancy/rbac.js'

export const REALTIME_EVENT_ROLES = {
  'project.created': 'viewer',
  'project.updated': 'viewer',
  'project.deleted': 'viewer',
  'member.joined': 'viewer',
  'member.left': 'viewer',
  'subscription.changed': 'admin',
} as const satisfies Partial<Record<DomainEventType, Role>>
export type RealtimeEventType = keyof typeof REALTIME_EVENT_ROLES

export const isRealtimeEventType = (type: string): type is RealtimeEventType => Object.hasOwn(REALTIME_EVENT_ROLES, type)
export const minLevelOf = (type: string): number => ROLE_LEVEL[(REALTIME_EVENT_ROLES as Record<string, Role>)[type] ?? 'admin']

/** A stream id, `<ms>-<seq>`. */
export const SEQ_PATTERN = '^[0-9]{1,15}-[0-9]{1,15}$'

/** Order of two stream ids (negative: a before b). */
export function compareSeq(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db))
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1))
}

/** One event as this process sends it: serialised once, written to every client that may see it. */
export interface Frame {
  seq: string
  type: string
  minLevel: number
  /** The JSON object (wire shape above): a WebSocket text message. */
  json: string
  /** The same as an SSE event. */
  sse: string
}

/** `body` is the event without its seq, `{"id":…,"type":…}` as published (stream.ts). */
export function frameOf(seq: string, type: string, body: string): Frame {
  const json = `{"seq":"${seq}",${body.slice(1)}`
  return { seq, type, minLevel: minLevelOf(type), json, sse: `id: ${seq}\nevent: ${type}\ndata: ${json}\n\n` }
}
