/** TypeBox schemas of /api/webhooks. */
import { Type } from 'typebox'
import { Text, Uuid, uuid } from '../../core/lib/schemas.js'
import { WEBHOOK_EVENT_TYPES } from './events.js'

const Timestamp = Type.String({ format: 'date-time' })
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()])

export const EventType = Type.Union(
  WEBHOOK_EVENT_TYPES.map((t) => Type.Literal(t)),
  { description: 'A domain event type' },
)
const Events = Type.Array(EventType, { minItems: 1, maxItems: WEBHOOK_EVENT_TYPES.length, uniqueItems: true })
const Url = Type.String({ minLength: 8, maxLength: 2000, description: 'Absolute http(s) URL (https in production); redirects are not followed' })
const Description = Text({ maxLength: 500 })

export const CreateEndpointBody = Type.Object(
  { url: Url, events: Events, description: Type.Optional(Nullable(Description)) },
  { additionalProperties: false },
)
export const UpdateEndpointBody = Type.Object(
  {
    url: Type.Optional(Url),
    events: Type.Optional(Events),
    description: Type.Optional(Nullable(Description)),
    enabled: Type.Optional(Type.Boolean({ description: 'true re-enables a disabled endpoint and resets its failure count' })),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const EndpointSchema = Type.Object({
  id: Uuid,
  url: Type.String(),
  description: Nullable(Type.String()),
  events: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  consecutiveFailures: Type.Integer({ description: 'Failed attempts since the last success; the endpoint is disabled at WEBHOOKS_DISABLE_AFTER' }),
  disabledReason: Nullable(Type.String()),
  lastSuccessAt: Nullable(Timestamp),
  lastFailureAt: Nullable(Timestamp),
  createdAt: Timestamp,
  updatedAt: Timestamp,
})
export const CreatedEndpointSchema = Type.Object({
  ...EndpointSchema.properties,
  secret: Type.String({ description: 'The signing secret (whsec_…), shown only in this answer: store it now' }),
})
export const EndpointListSchema = Type.Object({ items: Type.Array(EndpointSchema) })

export const DeliverySchema = Type.Object({
  id: Uuid,
  endpointId: Uuid,
  eventId: Type.String({ description: 'The webhook-id header: the same on every attempt and redelivery of this event' }),
  eventType: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
  attempts: Type.Integer(),
  responseStatus: Nullable(Type.Integer()),
  responseBody: Nullable(Type.String({ description: 'The first KB of the last response' })),
  error: Nullable(Type.String()),
  durationMs: Nullable(Type.Integer()),
  payload: Type.String({ description: 'The body sent (what the signature covers)' }),
  lastAttemptAt: Nullable(Timestamp),
  createdAt: Timestamp,
})
export const DeliveryPageSchema = Type.Object({ items: Type.Array(DeliverySchema), nextCursor: Nullable(Uuid) })
export const ListDeliveriesQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    cursor: Type.Optional(uuid({ description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
)
export const EndpointParams = Type.Object({ id: Uuid })
export const DeliveryParams = Type.Object({ id: Uuid, deliveryId: Uuid })
