/**
 * The response contract, checked on every response a test app sends. Fastify's serializer shapes a
 * body by the route's response schema but never validates it, and any status without a schema goes
 * out as is. So every app built by test/helpers/build-app.ts gets an onSend hook that validates each
 * response against what the route documents (the same schemas /docs/json publishes) for its status:
 *
 * - a status the route doesn't document, a body that doesn't match its schema, a content type it
 *   doesn't declare → a violation;
 * - unrouted answers (404s) and hidden routes (Bull Board, /metrics, /docs files) must still give an
 *   error as the kit's `{statusCode, error, message, code}` when they fail.
 *
 * A violation turns the response into 500 CONTRACT_VIOLATION (the test asserting on it fails there,
 * naming the route) and is recorded; test/setup/contract.ts fails the running test with every
 * violation recorded during it, so even a response no assertion looks at can't drift from the docs.
 */
import { Ajv, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ErrorSchema } from '../../src/core/lib/schemas.js'

type Json = Record<string, unknown>
const violations: string[] = []

/** The violations recorded since the last call (and forgets them). */
export function takeContractViolations(): string[] {
  return violations.splice(0)
}

function createAjv() {
  const ajv = new Ajv({ strict: false, allErrors: true, coerceTypes: false, useDefaults: false, removeAdditional: false })
  addFormats.default(ajv)
  return ajv
}

const isJsonType = (type: string) => type === 'application/json' || type.endsWith('+json')

/** The documented response for a status: exact code, then 4xx/5xx, then default. */
function responseFor(responses: Json, status: number): unknown {
  const range = `${Math.floor(status / 100)}xx`
  return responses[status] ?? responses[String(status)] ?? responses[range] ?? responses[range.toUpperCase()] ?? responses.default
}

export function installContractCheck(fastify: FastifyInstance) {
  const ajv = createAjv()
  ajv.addSchema(ErrorSchema)
  const compiled = new WeakMap<object, ValidateFunction>()
  const validator = (schema: object) => {
    let fn = compiled.get(schema)
    if (!fn) {
      fn = ajv.compile(schema)
      compiled.set(schema, fn)
    }
    return fn
  }

  fastify.addHook('onReady', async () => {
    for (const [id, schema] of Object.entries(fastify.getSchemas() as Record<string, object>))
      if (!ajv.getSchema(id)) ajv.addSchema(schema, id)
  })

  fastify.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    // 499 CLIENT_CLOSED_REQUEST is written to a client that already left: nobody can read it, so it is no
    // part of the contract (it shows in logs only).
    if (reply.statusCode === 499) return payload
    const problem = check(req, reply, payload)
    if (!problem) return payload
    const message = `${req.method} ${req.routeOptions.url ?? req.url} → ${reply.statusCode}: ${problem}`
    violations.push(message)
    reply.code(500).type('application/json; charset=utf-8')
    return JSON.stringify({
      statusCode: 500,
      error: 'Internal Server Error',
      message: `Contract violation: ${message}`,
      code: 'CONTRACT_VIOLATION',
    })
  })

  function check(req: FastifyRequest, reply: FastifyReply, payload: unknown): string | undefined {
    const status = reply.statusCode
    const mediaType = String(reply.getHeader('content-type') ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase()
    if (payload !== null && typeof payload === 'object' && !Buffer.isBuffer(payload)) return undefined // a stream: not buffered here
    const text = payload === undefined || payload === null ? '' : Buffer.isBuffer(payload) ? payload.toString('utf8') : String(payload)
    const parse = (): { ok: true; body: unknown } | { ok: false } => {
      try {
        return { ok: true, body: JSON.parse(text) }
      } catch {
        return { ok: false }
      }
    }
    const validate = (schema: object, what: string) => {
      if (req.method === 'HEAD') return undefined
      if (!isJsonType(mediaType)) {
        const type = (schema as Json).type
        return type === 'string' || (type === 'null' && text === '')
          ? undefined
          : `${what}: a ${mediaType || 'bodiless'} response where JSON was documented`
      }
      const parsed = parse()
      if (!parsed.ok) return `${what}: the body is not JSON`
      const fn = validator(schema)
      return fn(parsed.body) ? undefined : `${what}: ${ajv.errorsText(fn.errors)} in ${text.slice(0, 300)}`
    }

    const schema = req.routeOptions.schema as { hide?: boolean; response?: Json } | undefined
    if (!schema || schema.hide) {
      // Outside the documented API: only its errors are held to the kit's error shape.
      if (status < 400 || !isJsonType(mediaType))
        return status >= 400 && text !== '' ? `error answered as ${mediaType || 'no content type'}` : undefined
      return validate(ErrorSchema, 'error body')
    }
    const documented = schema.response ? responseFor(schema.response, status) : undefined
    if (!documented) return `status ${status} is not documented (documented: ${Object.keys(schema.response ?? {}).join(', ') || 'none'})`
    const content = (documented as { content?: Record<string, { schema: object }> }).content
    if (content) {
      const entry = content[mediaType]
      if (!entry) return `content type ${mediaType || '(none)'} is not documented (documented: ${Object.keys(content).join(', ')})`
      return validate(entry.schema, 'body')
    }
    // Fastify never writes a body on 204/304 (a serialised `null` is dropped); a bodiless redirect is a redirect.
    if (status === 204 || status === 304 || (status >= 300 && status < 400 && text === '')) return undefined
    return validate(documented as object, 'body')
  }
}
