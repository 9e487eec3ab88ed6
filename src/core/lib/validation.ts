/**
 * Request validation with two Ajv instances: querystring, params and headers arrive as strings and
 * are coerced to the schema's types; JSON bodies are not coerced, so `{"name": 123}` is a 400
 * instead of the string "123" (Fastify's default coerces every part alike).
 */
import { Ajv, type Options } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

const base: Options = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }

function build(options: Options) {
  const ajv = new Ajv({ ...base, ...options })
  addFormats.default(ajv)
  return ajv
}

export function createValidatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = build({ coerceTypes: false })
  const coercing = build({ coerceTypes: 'array' })
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object)
}
