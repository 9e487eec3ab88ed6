/**
 * What of an error may be written down (logs, job records). A failed query carries its data: drizzle's
 * message is "Failed query: … params: …" (argon2 and API-key hashes, emails), and Postgres' `detail`
 * repeats the offending values ("Key (email)=(…) already exists"). A database failure is therefore
 * described by SQLSTATE, constraint, table and column only, plus the stack frames (never its message).
 */
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { stdSerializers } from 'pino'

export interface DatabaseFailure {
  type: string
  message: string
  sqlState?: string
  constraint?: string
  table?: string
  column?: string
  /** A driver-level code with no SQLSTATE (CONNECTION_CLOSED, ECONNREFUSED, …). */
  code?: string
  stack?: string
}

interface PgFields {
  code?: unknown
  severity?: unknown
  constraint_name?: unknown
  table_name?: unknown
  column_name?: unknown
}

const SQLSTATE = /^[0-9A-Z]{5}$/
const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined)
const isPostgresError = (e: object) => (e as { name?: unknown }).name === 'PostgresError' || typeof (e as PgFields).severity === 'string'

/** The error chain (err, its cause, …), at most a few links deep. */
function chain(err: unknown): object[] {
  const links: object[] = []
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++)
    links.push(e)
  return links
}

/** Only the "    at …" lines: the first line of a stack repeats the message. */
const framesOf = (stack: unknown) =>
  typeof stack === 'string'
    ? stack
        .split('\n')
        .filter((l) => l.startsWith('    at '))
        .join('\n')
    : undefined

/** Undefined unless the error is (or was caused by) a failed query. */
export function databaseFailure(err: unknown): DatabaseFailure | undefined {
  const links = chain(err)
  if (!links.some((e) => e instanceof DrizzleQueryError || isPostgresError(e))) return undefined
  const pg = links.find(isPostgresError) as PgFields | undefined
  const code = links.map((e) => str((e as { code?: unknown }).code)).find((c) => c !== undefined)
  const sqlState = code && SQLSTATE.test(code) ? code : undefined
  const outer = links[0] as Error
  return {
    type: outer.constructor?.name && outer.constructor.name !== 'Object' ? outer.constructor.name : 'Error',
    message: sqlState ? `database error ${sqlState}` : `database failure${code ? ` ${code}` : ''}`,
    ...(sqlState ? { sqlState } : code ? { code } : {}),
    ...(str(pg?.constraint_name) ? { constraint: str(pg?.constraint_name) } : {}),
    ...(str(pg?.table_name) ? { table: str(pg?.table_name) } : {}),
    ...(str(pg?.column_name) ? { column: str(pg?.column_name) } : {}),
    ...(framesOf(outer.stack) ? { stack: framesOf(outer.stack) } : {}),
  }
}

/** pino's `err` serializer: database failures described as above, anything else as pino would. */
export function serializeError(err: unknown): unknown {
  if (typeof err !== 'object' || err === null) return err
  return databaseFailure(err) ?? stdSerializers.err(err as Error)
}

/** The text a job record keeps of a failure (stacks down the cause chain; database failures described safely). */
export function errorText(err: unknown): string {
  const db = databaseFailure(err)
  if (db) {
    const where = [db.table && `table ${db.table}`, db.constraint && `constraint ${db.constraint}`, db.column && `column ${db.column}`]
    return [`${db.type}: ${db.message}${where.some(Boolean) ? ` (${where.filter(Boolean).join(', ')})` : ''}`, db.stack]
      .filter(Boolean)
      .join('\n')
  }
  const parts: string[] = []
  for (const e of chain(err)) parts.push(e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e))
  return parts.length ? parts.join('\nCaused by: ') : String(err)
}

/** The innermost cause's message: drizzle wraps driver errors in "Failed query: …" with the parameters. */
export function errorMessage(err: unknown): string {
  let e: unknown = err
  while (e instanceof Error && e.cause instanceof Error) e = e.cause
  return (e instanceof Error ? e.message : String(e)).slice(0, 2000)
}
