/**
 * Errors raised outside the handlers still leave as `{ statusCode, error, message, code }`: the
 * router's (bad percent-encoding, over-long parameters), Node's HTTP parser's (bad Content-Length),
 * the body parsers' (text/plain). And a failed query is logged by SQLSTATE, constraint and table,
 * never with its parameters (argon2 and API-key hashes).
 */
import { connect as netConnect } from 'node:net'
import { Writable } from 'node:stream'
import { sql } from 'drizzle-orm'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { users } from '../drizzle/host/schema.js'
import app, { serverOptions } from '../src/app.js'
import { connect } from '../src/core/db/connect.js'
import { createHostDatabase } from '../src/core/db/host.js'
import { errorText, serializeError } from '../src/core/lib/error-log.js'
import { loggerOptions } from '../src/core/lib/logger.js'
import { toErrorBody } from '../src/core/plugins/errors.js'
import { createClient } from './helpers/client.js'
import { ADMIN_URL } from './helpers/env.js'
import { createTestEnv, type TestEnv, withDatabase } from './helpers/test-env.js'

let env: TestEnv
let fastify: FastifyInstance
const logLines: string[] = []

beforeAll(async () => {
  env = await createTestEnv({ LOG_LEVEL: 'info' })
  // The app with the production logger options, writing into memory.
  const sink = new Writable({
    write(chunk, _enc, done) {
      logLines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  const logger: FastifyBaseLogger = pino(loggerOptions({ ...env.config, env: 'test' }), sink)
  fastify = Fastify({ ...serverOptions(env.config), loggerInstance: logger })
  await fastify.register(fp(app), { config: env.config })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
})
afterAll(async () => {
  await fastify?.close()
  await env?.cleanup()
})

const errorShape = (statusCode: number, code: string) => ({ statusCode, error: expect.any(String), message: expect.any(String), code })

/** One raw HTTP exchange over a socket: what the server answers to bytes no HTTP client would send. */
function rawHttp(request: string): Promise<string> {
  const { port } = fastify.server.address() as { port: number }
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(request))
    let data = ''
    socket.on('data', (d) => {
      data += d
    })
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer to ${JSON.stringify(request)}`)))
  })
}

function parseRaw(response: string) {
  const [head, body] = response.split('\r\n\r\n')
  return { status: Number(head!.split(' ')[1]), head: head!, body: JSON.parse(body!) }
}

describe('errors before routing', () => {
  it('bad percent-encoding → 400 BAD_URL in the kit shape', async () => {
    for (const url of ['/api/projects/%E0%A4%A', '/api/projects/%', '/t/%ZZ/api/projects']) {
      const res = await fastify.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(400)
      expect(res.json(), url).toEqual(errorShape(400, 'BAD_URL'))
      expect(res.headers['content-type']).toMatch(/^application\/json/)
    }
  })

  it('a path parameter over the router limit → 414 URI_TOO_LONG in the kit shape', async () => {
    const res = await fastify.inject({ method: 'GET', url: `/api/projects/${'a'.repeat(300)}` })
    expect(res.statusCode).toBe(414)
    expect(res.json()).toEqual(errorShape(414, 'URI_TOO_LONG'))
  })

  it('a text/plain body → 415 UNSUPPORTED_MEDIA_TYPE (the API speaks JSON only)', async () => {
    const res = await fastify.inject({ method: 'POST', url: '/auth/login', headers: { 'content-type': 'text/plain' }, payload: 'hello' })
    expect(res.statusCode).toBe(415)
    expect(res.json()).toEqual(errorShape(415, 'UNSUPPORTED_MEDIA_TYPE'))
  })

  it('what the HTTP parser rejects gets the kit shape too (real sockets)', async () => {
    const cases: [string, number, string][] = [
      [
        'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}',
        400,
        'INVALID_CONTENT_LENGTH',
      ],
      [
        'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
        400,
        'INVALID_CONTENT_LENGTH',
      ],
      [
        'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        400,
        'INVALID_CONTENT_LENGTH',
      ],
      ['GARBAGE\r\n\r\n', 400, 'MALFORMED_REQUEST'],
      [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ]
    for (const [request, status, code] of cases) {
      const res = parseRaw(await rawHttp(request))
      expect(res.status, request.slice(0, 80)).toBe(status)
      expect(res.body, request.slice(0, 80)).toEqual(errorShape(status, code))
      expect(res.head).toMatch(/content-type: application\/json/i)
    }
    // A Content-Length that promises fewer bytes than sent: the rest parses as a broken second request.
    // Whichever answers make it out before the connection closes, each is in the kit's shape.
    const smuggled = await rawHttp(
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}XYZ / HTTP/1.1\r\n\r\n',
    )
    const answers = smuggled.split(/(?=HTTP\/1\.1 )/)
    expect(answers.length).toBeGreaterThan(0)
    for (const answer of answers)
      expect(parseRaw(answer).body).toEqual(errorShape(400, expect.stringMatching(/^(VALIDATION_ERROR|MALFORMED_REQUEST)$/)))
  })
})

describe('database failures', () => {
  it('a failed insert is logged by SQLSTATE, constraint and table: no hash, no parameter', async () => {
    // Make inserts into users and API keys fail (NOT VALID: existing rows are not checked, new ones are).
    const admin = connect(withDatabase(ADMIN_URL, new URL(env.hostUrl).pathname.slice(1)), { max: 1 })
    const c = createClient(fastify)
    try {
      const signup = await c.signup('keeper@example.com')
      expect(signup.statusCode).toBe(201)
      // Verified first (API keys need a verified email), while the users table still takes writes.
      await admin`update core_users set email_verified_at = now() where email = 'keeper@example.com'`
      await admin.unsafe('alter table core_users add constraint test_refuse_users check (false) not valid')
      await admin.unsafe('alter table core_api_keys add constraint test_refuse_keys check (false) not valid')

      const before = logLines.length
      const failedSignup = await createClient(fastify).signup('leaky@example.com', 'a very secret passphrase 42', 'Leaky')
      expect(failedSignup.statusCode).toBe(500)
      expect(failedSignup.json()).toEqual(errorShape(500, 'INTERNAL_ERROR'))
      const failedKey = await c.post('/api/api-keys', { name: 'ci key', role: 'viewer' })
      expect(failedKey.statusCode).toBe(500)

      const lines = logLines.slice(before)
      const failures = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request failed')
      expect(failures).toHaveLength(2)
      expect(failures.map((f) => f.err)).toEqual([
        expect.objectContaining({
          sqlState: '23514',
          constraint: 'test_refuse_users',
          table: 'core_users',
          message: 'database error 23514',
        }),
        expect.objectContaining({ sqlState: '23514', constraint: 'test_refuse_keys', table: 'core_api_keys' }),
      ])
      const text = lines.join('\n')
      expect(text).not.toContain('$argon2')
      expect(text).not.toMatch(/\b[0-9a-f]{64}\b/) // the API key's SHA-256
      expect(text).not.toContain('leaky@example.com')
      expect(text).not.toContain('Failing row')
      expect(text).not.toMatch(/params|insert into/i)
    } finally {
      await admin.unsafe('alter table core_users drop constraint if exists test_refuse_users')
      await admin.unsafe('alter table core_api_keys drop constraint if exists test_refuse_keys')
      await admin.end()
    }
  })

  it('job records and any other log line describe a failed query the same way', async () => {
    const host = createHostDatabase(env.hostUrl, 1)
    try {
      const err = await host.db
        .insert(users)
        .values({ email: 'dup@example.com', passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0$aGFzaA' })
        .then(() => host.db.insert(users).values({ email: 'dup@example.com', passwordHash: '$argon2id$v=19$second' }))
        .then(
          () => undefined,
          (e: unknown) => e,
        )
      expect(err).toBeInstanceOf(Error)
      expect(String((err as Error).message)).toContain('params:') // what drizzle would have logged
      const record = errorText(err)
      expect(record).toMatch(/database error 23505 \(table core_users, constraint \S+\)/)
      expect(record).not.toContain('argon2')
      expect(record).not.toContain('dup@example.com')
      expect(JSON.stringify(serializeError(err))).not.toContain('dup@example.com')
      // A real Postgres 22021 (NUL in text) is bad input for the error handler, not a 500.
      const nul = await host.sql`select ${'a\u0000b'}::text`.then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(toErrorBody(nul as Error)).toEqual(errorShape(400, 'INVALID_CHARACTERS'))
      const nulJson = await host.db.execute(sql`select ${'{"a":"\\u0000"}'}::jsonb`).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(toErrorBody(nulJson as Error)).toEqual(errorShape(400, 'INVALID_CHARACTERS'))
    } finally {
      await host.close()
    }
  })
})
