/** Schemas shared by the admin API's routes. */
import { Type } from 'typebox'
import { uuid } from '../../../core/lib/schemas.js'

export const DateTime = Type.String({ format: 'date-time' })
export const DateTimeOrNull = Type.Union([DateTime, Type.Null()])
export const StringOrNull = Type.Union([Type.String(), Type.Null()])
export const Limit = Type.Integer({ minimum: 1, maximum: 200, default: 50 })
export const Cursor = uuid({ description: 'cursor: nextCursor of the previous page' })
export const page = <T extends Parameters<typeof Type.Array>[0]>(item: T) =>
  Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'null on the last page' }) })
export const tags = ['admin']
