/** Schemas shared by many routes: the error body, ids, pagination. */
import { Type } from 'typebox'

export const ErrorSchema = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    code: Type.String(),
  },
  { $id: 'Error', additionalProperties: true },
)

/** The error responses every route may give, so OpenAPI documents them and serialisation never drops fields. */
export const errorResponses = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, ErrorSchema]))

export const Uuid = Type.String({ format: 'uuid' })
export const IdParams = Type.Object({ id: Uuid })
