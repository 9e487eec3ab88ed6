/** Schemas shared by many routes: the error body, ids, text, pagination. */
import { STATUS_CODES } from 'node:http'
import { type Static, type TString, type TStringOptions, Type } from 'typebox'
import { UUID_PATTERN } from './uuid.js'

export const ErrorSchema = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    code: Type.String({ description: 'A stable code to branch on: `x-error-codes` at the root of this document lists each with its status and meaning' }),
  },
  { $id: 'Error', additionalProperties: true },
)

/** One error response: a reference to the shared `Error` schema (one component in OpenAPI), described by its status. */
export const errorResponse = (code: number) =>
  Type.Unsafe<Static<typeof ErrorSchema>>({ $ref: 'Error#', description: STATUS_CODES[code] ?? 'Error' })

/** The error responses a route may give, so OpenAPI documents them and serialisation never drops fields. */
export const errorResponses = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorResponse(c)]))

/** A UUID in the strict 8-4-4-4-12 form (see lib/uuid.ts for why `format` alone is not enough). */
export const uuid = (options: TStringOptions = {}): TString => Type.String({ format: 'uuid', pattern: UUID_PATTERN, ...options })
export const Uuid = uuid()
export const IdParams = Type.Object({ id: Uuid })

// Control characters have no place in names and labels; NUL is also refused by Postgres (22021),
// which made it a 500. C0 (U+0000–U+001F), DEL and C1 (U+0080–U+009F).
const SINGLE_LINE = '^[^\\u0000-\\u001f\\u007f-\\u009f]*$'
// Free text may span lines: tab, line feed and carriage return are allowed, every other control is not.
const MULTI_LINE = '^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$'

/**
 * Every string a client sends (bodies, query strings) is one of these two, never a bare `Type.String()`:
 * `Text` for single-line values (names, labels, query parameters), `MultilineText` for free text.
 * Options (`minLength`, `maxLength`, `description`, …) pass through; a `pattern` of the caller's would
 * replace the control-character one, so fields with their own pattern (slugs, keys) exclude controls already.
 */
export const Text = (options: TStringOptions = {}): TString => Type.String({ pattern: SINGLE_LINE, ...options })
export const MultilineText = (options: TStringOptions = {}): TString => Type.String({ pattern: MULTI_LINE, ...options })
