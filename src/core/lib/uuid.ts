/**
 * The one UUID shape the kit accepts: 8-4-4-4-12 hex digits, nothing around them. Ajv's and
 * TypeBox's `format: 'uuid'` also accept `urn:uuid:…`, which Postgres refuses (a 500), so ids are
 * checked against this pattern everywhere (schemas through `Uuid` in lib/schemas.ts, code through `isUuid`).
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

const UUID_RE = new RegExp(UUID_PATTERN)

export const isUuid = (s: unknown): s is string => typeof s === 'string' && UUID_RE.test(s)
