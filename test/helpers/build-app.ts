/**
 * Build the app plugin (never the server) for a test, on a Fastify instance closed by the caller, with
 * the response contract check installed (test/helpers/contract.ts).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../../src/app.js'
import type { Config } from '../../src/core/config.js'
import { installContractCheck } from './contract.js'

/** `loggerInstance`: a logger of the test's own (e.g. pino on a stream it reads back). */
export async function buildApp(config: Config, opts: { loggerInstance?: FastifyBaseLogger } = {}): Promise<FastifyInstance> {
  const logging = opts.loggerInstance
    ? { loggerInstance: opts.loggerInstance }
    : { logger: config.logLevel === 'silent' ? false : { level: config.logLevel } }
  const fastify = Fastify({ ...serverOptions(config), ...logging }) as unknown as FastifyInstance
  // Every response is checked against the route's documented schemas: each test is a contract test.
  installContractCheck(fastify)
  // fp() skips encapsulation so the test sees the app's decorators (host, redis, …).
  await fastify.register(fp(app), { config })
  await fastify.ready()
  return fastify
}
