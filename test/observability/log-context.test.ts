/**
 * Log lines name their request, caller and tenant: a request's lines carry reqId and, once the guards
 * have run, userId and tenantId; a job's carry jobId, jobType and tenantId. x-request-id is taken from a
 * trusted proxy only (and only when well-formed) and echoed on every response. LOG_FILE copies the lines
 * to a file.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loggerOptions } from '../../src/core/lib/logger.js'
import { tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager, type JobWorkers, type TaskManager } from '../../src/core/jobs/task-manager.js'
import { buildApp } from '../helpers/build-app.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

type Line = Record<string, unknown> & { msg?: string }

/** A pino logger whose JSON lines the test reads back. */
function captureLogger() {
  const lines: Line[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const text of String(chunk).split('\n')) if (text) lines.push(JSON.parse(text) as Line)
      done()
    },
  })
  return { lines, logger: pino({ level: 'info' }, sink) }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const ctx = useApp() // TRUST_PROXY off
const capture = captureLogger()
let trusted: FastifyInstance // TRUST_PROXY on, logging to `capture`
let t: TenantFixture

const registry = {
  'test.log_context': tenantJob({
    payload: {},
    maxRetries: 0,
    async process(job) {
      job.logger.info('counting something')
      return { ok: true }
    },
  }),
}
let tasks: TaskManager<typeof registry>
let workers: JobWorkers

beforeAll(async () => {
  trusted = await buildApp(ctx.env.configWith({ TRUST_PROXY: 'true' }), { loggerInstance: capture.logger })
  t = await tenantWith(trusted)
  const s = trusted.services
  tasks = createTaskManager({ registry, deps: {}, host: s.host, catalog: s.catalog, pools: s.pools, redis: s.redis, config: s.config, logger: capture.logger })
  workers = tasks.startWorkers({ concurrency: 1 })
  await workers.ready()
})
afterAll(async () => {
  await workers?.close()
  await tasks?.close()
  await trusted?.close()
})

describe('request log lines', () => {
  it('carry reqId everywhere, and userId and tenantId once the guards know them', async () => {
    const res = await t.as(t.editor).get('/projects', { 'x-request-id': 'lb-7f3a.42' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['x-request-id']).toBe('lb-7f3a.42')
    const mine = await waitFor(() => {
      const lines = capture.lines.filter((l) => l.reqId === 'lb-7f3a.42')
      return lines.some((l) => l.msg === 'request completed') && lines
    })
    // "incoming request" is logged before anything is known about the caller; every line after the guard names them.
    const completed = mine.find((l) => l.msg === 'request completed')
    expect(completed).toMatchObject({ reqId: 'lb-7f3a.42', userId: t.editor.id, tenantId: t.id })
    expect(mine.find((l) => l.msg === 'incoming request')).toBeDefined()
  })

  it('name the user on routes outside a tenant (session only)', async () => {
    const res = await t.editor.c.get('/me', { 'x-request-id': 'me-1' })
    expect(res.statusCode, res.body).toBe(200)
    const completed = await waitFor(() => capture.lines.find((l) => l.reqId === 'me-1' && l.msg === 'request completed'))
    expect(completed).toMatchObject({ userId: t.editor.id })
    expect(completed).not.toHaveProperty('tenantId')
  })
})

describe('x-request-id', () => {
  it('is echoed from a trusted proxy when well-formed, and replaced by a UUID when not', async () => {
    for (const bad of ['has space', 'x'.repeat(65), 'quote"d', '']) {
      const res = await trusted.inject({ url: '/health', headers: { 'x-request-id': bad } })
      expect(res.headers['x-request-id'], bad).toMatch(UUID)
    }
    const ok = await trusted.inject({ url: '/health', headers: { 'x-request-id': '01JEXAMPLE:abc_DEF-9' } })
    expect(ok.headers['x-request-id']).toBe('01JEXAMPLE:abc_DEF-9')
  })

  it('from an untrusted client is replaced, on answers and errors alike', async () => {
    const res = await ctx.app.inject({ url: '/health', headers: { 'x-request-id': 'client-chosen' } })
    expect(res.headers['x-request-id']).toMatch(UUID)
    const missing = await ctx.app.inject({ url: '/nope', headers: { 'x-request-id': 'client-chosen' } })
    expect(missing.statusCode).toBe(404)
    expect(missing.headers['x-request-id']).toMatch(UUID)
    const first = await ctx.app.inject('/health')
    const second = await ctx.app.inject('/health')
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id'])
  })
})

describe('job log lines', () => {
  it('carry jobId, jobType and tenantId', async () => {
    const job = await tasks.submit('test.log_context', { tenantId: t.id })
    const line = await waitFor(() => capture.lines.find((l) => l.msg === 'counting something'))
    expect(line).toMatchObject({ jobId: job.id, jobType: 'test.log_context', tenantId: t.id })
  })
})

describe('LOG_FILE', () => {
  it('also writes the lines, as JSON, to the file (its folder created)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tk-log-'))
    try {
      const file = join(dir, 'nested', 'app.log')
      const logger = pino(loggerOptions({ env: 'test', logLevel: 'info', logFile: file }))
      logger.info({ tenantId: 't-1' }, 'to the file')
      const text = await waitFor(async () => (await readFile(file, 'utf8').catch(() => '')).includes('to the file') && readFile(file, 'utf8'))
      expect(JSON.parse(text.trim().split('\n').at(-1)!)).toMatchObject({ msg: 'to the file', tenantId: 't-1', level: 30 })
      await new Promise<void>((resolve) => logger.flush(() => resolve()))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
