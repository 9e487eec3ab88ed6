/**
 * /api/webhooks — the tenant's outbound webhook endpoints (admins only, on a plan with the `webhooks`
 * feature): register a URL and the events it wants (the `whsec_…` signing secret is in the create answer
 * only), list, read, change, delete; each endpoint's delivery log, a manual redelivery, and a test event.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { uuidv7 } from 'uuidv7'
import type { WebhookDelivery, WebhookEndpoint } from '../../../drizzle/tenant/schema.js'
import type { AppOptions } from '../../core/config.js'
import { encrypt } from '../../core/lib/crypto.js'
import { badRequest, conflict, notFound } from '../../core/lib/errors.js'
import { errorResponses } from '../../core/lib/schemas.js'
import { webhookBody } from './jobs.js'
import { createWebhooksRepository } from './repository.js'
import {
  CreatedEndpointSchema,
  CreateEndpointBody,
  DeliveryPageSchema,
  DeliveryParams,
  DeliverySchema,
  EndpointListSchema,
  EndpointParams,
  EndpointSchema,
  ListDeliveriesQuery,
  UpdateEndpointBody,
} from './schemas.js'
import { endpointsChanged } from './gate.js'
import { newEndpointSecret } from './signing.js'
import { assertPublicTarget, ForbiddenTarget } from './ssrf.js'

const iso = (d: Date | null) => (d ? d.toISOString() : null)
const endpointJson = ({ secretSealed: _sealed, ...e }: WebhookEndpoint) => ({
  ...e,
  lastSuccessAt: iso(e.lastSuccessAt),
  lastFailureAt: iso(e.lastFailureAt),
  createdAt: e.createdAt.toISOString(),
  updatedAt: e.updatedAt.toISOString(),
})
const deliveryJson = ({ updatedAt: _u, ...d }: WebhookDelivery) => ({ ...d, lastAttemptAt: iso(d.lastAttemptAt), createdAt: d.createdAt.toISOString() })
const endpointMissing = () => notFound('WEBHOOK_ENDPOINT_NOT_FOUND', 'No such webhook endpoint')
const guarded = errorResponses(400, 401, 402, 403, 404, 409, 503)
const tags = ['webhooks']
// Admins manage endpoints; the plan must sell webhooks (403 FEATURE_NOT_IN_PLAN otherwise).
const policy = { access: { minRole: 'admin' as const }, billing: { feature: 'webhooks' } }

const webhookRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const allowPrivate = config.webhooks.allowPrivateTargets

  /** 400 unless the URL is absolute http(s) (https in production), without credentials, and resolves to public addresses only. */
  async function checkedUrl(raw: string): Promise<string> {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw badRequest('WEBHOOK_URL_INVALID', 'The endpoint URL is not an absolute URL')
    }
    const schemes = config.env === 'production' ? ['https:'] : ['https:', 'http:']
    if (!schemes.includes(url.protocol)) throw badRequest('WEBHOOK_URL_INVALID', `The endpoint URL must use ${schemes.join(' or ')}`)
    if (url.username || url.password) throw badRequest('WEBHOOK_URL_INVALID', 'The endpoint URL must not carry credentials')
    try {
      await assertPublicTarget(url, allowPrivate)
    } catch (err) {
      if (!(err instanceof ForbiddenTarget)) throw err
      throw badRequest('WEBHOOK_URL_FORBIDDEN', `The endpoint URL is not allowed: ${err.message}`, { address: err.address ?? null })
    }
    return url.toString()
  }

  // Every process's listener learns at once that this tenant's endpoints changed (gate.ts).
  const changed = (tenantId: string) => endpointsChanged(fastify.services.invalidations, config.redisPrefix, tenantId)
  const deliver = (tenantId: string, deliveryId: string) =>
    fastify.services.tasks.submit('webhooks.deliver', { tenantId, deliveryId }, { id: deliveryId })

  fastify.get(
    '/',
    { config: policy, schema: { tags, summary: 'List the webhook endpoints', response: { 200: EndpointListSchema, ...guarded } } },
    async (req) => ({ items: (await createWebhooksRepository(req.tenantDb).list()).map(endpointJson) }),
  )

  fastify.post(
    '/',
    {
      config: policy,
      schema: {
        tags,
        summary: 'Register an endpoint; the answer carries its signing secret, shown this once',
        description: '400 WEBHOOK_URL_FORBIDDEN when the URL resolves to a private, loopback or link-local address.',
        body: CreateEndpointBody,
        response: { 201: CreatedEndpointSchema, ...guarded },
      },
    },
    async (req, reply) => {
      const url = await checkedUrl(req.body.url)
      const secret = newEndpointSecret()
      const endpoint = await createWebhooksRepository(req.tenantDb).create({
        url,
        description: req.body.description ?? null,
        events: req.body.events,
        secretSealed: encrypt(secret, config.encryptionKeys),
      })
      await changed(req.tenant!.id)
      return reply.code(201).send({ ...endpointJson(endpoint), secret })
    },
  )

  fastify.get(
    '/:id',
    { config: policy, schema: { tags, summary: 'Read an endpoint', params: EndpointParams, response: { 200: EndpointSchema, ...guarded } } },
    async (req) => {
      const endpoint = await createWebhooksRepository(req.tenantDb).findById(req.params.id)
      if (!endpoint) throw endpointMissing()
      return endpointJson(endpoint)
    },
  )

  fastify.patch(
    '/:id',
    {
      config: policy,
      schema: {
        tags,
        summary: 'Change an endpoint’s URL, events or description, or enable/disable it',
        params: EndpointParams,
        body: UpdateEndpointBody,
        response: { 200: EndpointSchema, ...guarded },
      },
    },
    async (req) => {
      const { url, ...rest } = req.body
      const patch = { ...rest, ...(url !== undefined ? { url: await checkedUrl(url) } : {}) }
      const endpoint = await createWebhooksRepository(req.tenantDb).update(req.params.id, patch)
      if (!endpoint) throw endpointMissing()
      await changed(req.tenant!.id)
      return endpointJson(endpoint)
    },
  )

  fastify.delete(
    '/:id',
    {
      config: policy,
      schema: { tags, summary: 'Delete an endpoint and its delivery log', params: EndpointParams, response: { 204: Type.Null(), ...guarded } },
    },
    async (req, reply) => {
      if (!(await createWebhooksRepository(req.tenantDb).remove(req.params.id))) throw endpointMissing()
      await changed(req.tenant!.id)
      return reply.code(204).send(null)
    },
  )

  fastify.get(
    '/:id/deliveries',
    {
      config: policy,
      schema: {
        tags,
        summary: 'The endpoint’s delivery log, newest first (cursor pagination)',
        params: EndpointParams,
        querystring: ListDeliveriesQuery,
        response: { 200: DeliveryPageSchema, ...guarded },
      },
    },
    async (req) => {
      const repo = createWebhooksRepository(req.tenantDb)
      if (!(await repo.findById(req.params.id))) throw endpointMissing()
      const page = await repo.deliveries(req.params.id, req.query)
      return { items: page.items.map(deliveryJson), nextCursor: page.nextCursor }
    },
  )

  fastify.post(
    '/:id/deliveries/:deliveryId/redeliver',
    {
      config: policy,
      schema: {
        tags,
        summary: 'Send a delivery’s event again (a new delivery, same webhook-id); 409 when the endpoint is disabled',
        params: DeliveryParams,
        response: { 202: DeliverySchema, ...guarded },
      },
    },
    async (req, reply) => {
      const repo = createWebhooksRepository(req.tenantDb)
      const endpoint = await repo.findById(req.params.id)
      if (!endpoint) throw endpointMissing()
      const original = await repo.findDelivery(endpoint.id, req.params.deliveryId)
      if (!original) throw notFound('WEBHOOK_DELIVERY_NOT_FOUND', 'No such delivery for this endpoint')
      if (!endpoint.enabled) throw conflict('WEBHOOK_ENDPOINT_DISABLED', 'The endpoint is disabled: enable it first')
      const id = uuidv7()
      await repo.addDelivery({ id, endpointId: endpoint.id, eventId: original.eventId, eventType: original.eventType, payload: original.payload })
      await deliver(req.tenant!.id, id)
      return reply.code(202).send(deliveryJson((await repo.findDelivery(endpoint.id, id))!))
    },
  )

  fastify.post(
    '/:id/test',
    {
      config: policy,
      schema: {
        tags,
        summary: 'Send a `webhook.test` event to the endpoint (follow it in its delivery log)',
        params: EndpointParams,
        response: { 202: DeliverySchema, ...guarded },
      },
    },
    async (req, reply) => {
      const repo = createWebhooksRepository(req.tenantDb)
      const endpoint = await repo.findById(req.params.id)
      if (!endpoint) throw endpointMissing()
      if (!endpoint.enabled) throw conflict('WEBHOOK_ENDPOINT_DISABLED', 'The endpoint is disabled: enable it first')
      const eventId = uuidv7()
      const payload = webhookBody({ type: 'webhook.test', occurredAt: new Date().toISOString(), data: { endpointId: endpoint.id } })
      await repo.addDelivery({ id: eventId, endpointId: endpoint.id, eventId, eventType: 'webhook.test', payload })
      await deliver(req.tenant!.id, eventId)
      return reply.code(202).send(deliveryJson((await repo.findDelivery(endpoint.id, eventId))!))
    },
  )
}

export default webhookRoutes
