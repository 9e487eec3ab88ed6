/**
 * A registry of named SQL queries with typed, validated parameters (the seed's run_id / validate_params):
 * reports, exports and admin screens keep their SQL in one reviewed place and run it by id.
 *
 *   export const reports = defineQueries({
 *     projectsByStatus: namedQuery<{ id: string; name: string }>()(
 *       'select id, name from projects where status = :status order by name limit :limit',
 *       Type.Object({ status: Type.Union([Type.Literal('active'), Type.Literal('archived')]), limit: Type.Integer({ minimum: 1, maximum: 500 }) }),
 *     ),
 *   })
 *   const rows = await runNamed(req.tenantDb, reports, 'projectsByStatus', { status: 'active', limit: 20 })
 *
 * `:name` placeholders become bind parameters (never spliced into the text); `::type` casts, string
 * literals, quoted identifiers and comments are left alone. Every placeholder must be in the schema and
 * every schema property used (checked at definition, so a typo fails at boot); values are validated before
 * anything reaches Postgres: an unknown id is 404 UNKNOWN_QUERY, bad values 400 INVALID_QUERY_PARAMS.
 */
import { type SQL, sql } from 'drizzle-orm'
import { type Static, type TObject, Type } from 'typebox'
import { Compile } from 'typebox/compile'
import { AppError, badRequest } from '../lib/errors.js'
import type { AnyDb } from './table-helpers.js'

export interface NamedQuery<P extends TObject = TObject, R = Record<string, unknown>> {
  text: string
  params: P
  /** Text chunks around the placeholders, and the placeholders' names in order. */
  parts: { chunks: string[]; names: string[] }
  check: (value: unknown) => boolean
  errors: (value: unknown) => { path: string; message: string }[]
  /** Phantom: the row type. */
  readonly row?: R
}

/** Splits `text` at its `:name` placeholders (outside literals, quoted identifiers, comments and `::` casts). */
export function parsePlaceholders(text: string): { chunks: string[]; names: string[] } {
  const chunks: string[] = []
  const names: string[] = []
  let chunk = ''
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    const rest = text.slice(i)
    const skip = /^'(?:[^']|'')*'/.exec(rest) ?? /^"(?:[^"]|"")*"/.exec(rest) ?? /^--[^\n]*/.exec(rest) ?? /^\/\*[\s\S]*?\*\//.exec(rest) ?? /^::/.exec(rest)
    if (skip) {
      chunk += skip[0]
      i += skip[0].length
      continue
    }
    const placeholder = c === ':' ? /^:([A-Za-z_][A-Za-z0-9_]*)/.exec(rest) : null
    if (placeholder) {
      chunks.push(chunk)
      names.push(placeholder[1]!)
      chunk = ''
      i += placeholder[0].length
      continue
    }
    chunk += c
    i++
  }
  chunks.push(chunk)
  return { chunks, names }
}

/** One query; call as `namedQuery<RowType>()(text, paramsSchema)` to type its rows. */
export const namedQuery =
  <R = Record<string, unknown>>() =>
  <P extends TObject>(text: string, params: P): NamedQuery<P, R> => {
    const parts = parsePlaceholders(text)
    const declared = Object.keys(params.properties)
    const unknown = parts.names.filter((n) => !declared.includes(n))
    const unused = declared.filter((n) => !parts.names.includes(n))
    if (unknown.length || unused.length) {
      throw new Error(`named query ${JSON.stringify(text.slice(0, 60))}: placeholders without a schema: [${unknown}], schema properties unused: [${unused}]`)
    }
    const compiled = Compile(Type.Object(params.properties, { additionalProperties: false, required: params.required }))
    return {
      text,
      params,
      parts,
      check: (v) => compiled.Check(v),
      errors: (v) => [...compiled.Errors(v)].map((e) => ({ path: e.instancePath || '/', message: e.message })),
    }
  }

export type QueryRegistry = Record<string, NamedQuery>

export const defineQueries = <Q extends Record<string, NamedQuery<TObject, unknown>>>(queries: Q): Q => queries

type ParamsOf<Q> = Q extends NamedQuery<infer P, unknown> ? Static<P> : never
type RowOfQuery<Q> = Q extends NamedQuery<TObject, infer R> ? R : never

/** The seed's validate_params: the parameters' problems (empty when they are fine). */
export function validateParams(query: NamedQuery<TObject, unknown>, params: unknown): { path: string; message: string }[] {
  return query.check(params) ? [] : query.errors(params)
}

/** The query as drizzle SQL: its text with each placeholder bound as a parameter. */
export function toSql(query: NamedQuery<TObject, unknown>, params: Record<string, unknown>): SQL {
  const { chunks, names } = query.parts
  const pieces: SQL[] = [sql.raw(chunks[0]!)]
  for (const [i, name] of names.entries()) pieces.push(sql`${params[name]}`, sql.raw(chunks[i + 1]!))
  return sql.join(pieces)
}

/** The seed's run_id: run a registered query by id with validated parameters; its rows. */
export async function runNamed<Q extends Record<string, NamedQuery<TObject, unknown>>, K extends keyof Q & string>(
  db: AnyDb,
  registry: Q,
  id: K,
  params: ParamsOf<Q[K]>,
): Promise<RowOfQuery<Q[K]>[]> {
  const query = Object.hasOwn(registry, id) ? registry[id] : undefined
  if (!query) throw new AppError(404, 'UNKNOWN_QUERY', `no named query ${JSON.stringify(id)}`)
  const problems = validateParams(query, params)
  if (problems.length) throw badRequest('INVALID_QUERY_PARAMS', `parameters of ${id} are not valid: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, { errors: problems })
  const result = await db.execute(toSql(query, params as Record<string, unknown>))
  return [...(result as unknown as Iterable<RowOfQuery<Q[K]>>)]
}
