import { Type } from 'typebox'
import { MultilineText, Text, Uuid } from '../../core/lib/schemas.js'

export const ProjectStatus = Type.Union([Type.Literal('active'), Type.Literal('archived')])

export const ProjectSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  status: ProjectStatus,
  createdBy: Type.Union([Uuid, Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
})

// Null first: with the app's ajv coerceTypes, a string-first union turns a JSON null into "" (the
// string branch coerces it and wins), so a description could never be cleared.
const Description = Type.Union([Type.Null(), MultilineText({ maxLength: 5000 })])

export const CreateProjectBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(Description),
  },
  { additionalProperties: false },
)

export const UpdateProjectBody = Type.Object(
  {
    name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    description: Type.Optional(Description),
    status: Type.Optional(ProjectStatus),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const ListProjectsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    cursor: Type.Optional(Uuid),
    status: Type.Optional(ProjectStatus),
  },
  { additionalProperties: false },
)

export const ProjectPageSchema = Type.Object({ items: Type.Array(ProjectSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) })
