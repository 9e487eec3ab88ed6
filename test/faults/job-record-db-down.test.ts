/**
 * A job is never re-run because only its own record (or its "effect done" mark) could not be written,
 * and email.send never mails twice for one job id. Postgres here is a scratch cluster of this file's
 * own, stopped and started by the tests; the SMTP server is real (smtp-server) and keeps working.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { connect } from '../../src/core/db/connect.js'
import { welcomeEmail } from '../../src/core/email/senders.js'
import { createServices, type Services } from '../../src/services.js'
import { type ScratchPostgres, startScratchPostgres } from '../helpers/scratch-services.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { silent, until } from '../jobs/helpers.js'

let pg: ScratchPostgres
let env: TestEnv
let smtp: SmtpCapture
let services: Services
/** What the next message's arrival does before the SMTP server answers 250. */
let onArrival: (() => void) | undefined
let pgDown = false
const stopPg = () => {
  pg.stop('immediate')
  pgDown = true
}
const startPg = () => {
  pg.start()
  pgDown = false
}

beforeAll(async () => {
  pg = await startScratchPostgres({ maxConnections: 40 })
  const hostUrl = await pg.createHostDatabase()
  smtp = await startSmtpCapture({ beforeAccept: () => onArrival?.() })
  env = await createTestEnv({
    DATABASE_URL: hostUrl,
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    SMTP_STARTTLS: 'false',
    JOB_RECONCILE_INTERVAL_MS: '0',
  })
  services = createServices(env.config, silent)
  await services.catalog.ready
}, 60_000)
afterEach(() => {
  // A failed test may have left the cluster stopped; the next one needs it.
  if (pgDown) startPg()
  onArrival = undefined
  smtp.messages.length = 0
})
afterAll(async () => {
  await services?.close()
  await smtp?.close()
  await env?.cleanup()
  pg?.destroy()
})

const message = (to: string) => welcomeEmail({ to, userName: 'Ada', tenantName: 'Acme', dashboardUrl: 'https://app.example.test/' })

async function hostRow<T>(query: (sql: ReturnType<typeof connect>) => Promise<T>): Promise<T | undefined> {
  const sql = connect(env.config.databaseUrl!, { max: 1 })
  try {
    return await query(sql)
  } catch {
    return undefined // still down
  } finally {
    await sql.end({ timeout: 1 })
  }
}

describe('the record database goes down around an email.send', () => {
  it('down right after the SMTP server accepted the mail: the job completes once, one email, the records catch up when Postgres is back', async () => {
    const workers = services.tasks.startWorkers({ scopes: ['system'], concurrency: 1 })
    await workers.ready()
    try {
      const job = await services.tasks.submit('email.send', message('once@example.test'))
      // The mail is in; Postgres dies before the worker can write "sent" or "completed".
      onArrival = () => {
        onArrival = undefined
        stopPg()
      }
      const state = await until(
        async () => {
          const s = await services.tasks.queues.system.getJobState(job.id)
          return s !== 'active' && s !== 'waiting' ? s : undefined
        },
        15_000,
        'the job to leave active',
      )
      // Completed in BullMQ on its first attempt: nothing will run it again.
      expect(state).toBe('completed')
      expect((await services.tasks.queues.system.getJob(job.id))?.attemptsMade).toBe(1)
      expect(smtp.messages).toHaveLength(1)

      startPg()
      const done = await until(
        () =>
          hostRow(async (sql) => {
            const [r] = await sql<{ status: string; retry_count: number; result: { messageId: string } }[]>`
              select status, retry_count, result from sys_jobs where id = ${job.id}`
            const [e] = await sql<{ status: string; attempts: number }[]>`
              select status, attempts from sys_job_effects where job_id = ${job.id}`
            return r?.status === 'completed' && e?.status === 'done' ? { r, e } : undefined
          }),
        20_000,
        'the record and the effect to be written once Postgres is back',
      )
      expect(done.r.retry_count).toBe(0)
      expect(done.e.attempts).toBe(1)
      // The Message-ID is the job's own (a repeat would be recognisable downstream).
      expect(done.r.result.messageId).toBe(`<${job.id}@localhost>`)
      expect(smtp.messages.map((m) => m.messageId)).toEqual([`<${job.id}@localhost>`])
      expect(smtp.messages).toHaveLength(1)
    } finally {
      await workers.close()
    }
  })

  it('down before the job starts: the attempt fails before sending, the retry after Postgres returns sends exactly once', async () => {
    const job = await services.tasks.submit('email.send', message('later@example.test'))
    stopPg()
    const workers = services.tasks.startWorkers({ scopes: ['system'], concurrency: 1 })
    await workers.ready()
    try {
      // The first attempt could not record that it was about to send, so it did not send.
      await until(async () => ((await services.tasks.queues.system.getJob(job.id))?.attemptsMade ?? 0) >= 1, 15_000, 'a failed attempt')
      expect(smtp.messages).toHaveLength(0)
      startPg()
      const record = await until(
        () =>
          hostRow(async (sql) => {
            const [r] = await sql<{ status: string; retry_count: number }[]>`select status, retry_count from sys_jobs where id = ${job.id}`
            return r?.status === 'completed' ? r : undefined
          }),
        30_000,
        'the job to complete after Postgres is back',
      )
      expect(record.retry_count).toBeGreaterThanOrEqual(1)
      const bull = await services.tasks.queues.system.getJob(job.id)
      expect(await bull!.getState()).toBe('completed')
      expect(smtp.messages.map((m) => m.to)).toHaveLength(1)
    } finally {
      await workers.close()
    }
  })

  it('a re-run of an email.send whose effect is done skips the send and returns the recorded result', async () => {
    const workers = services.tasks.startWorkers({ scopes: ['system'], concurrency: 1 })
    await workers.ready()
    try {
      // A run that sent and marked the effect done but died before BullMQ heard of it.
      const id = randomUUID()
      await hostRow(
        (sql) =>
          sql`insert into sys_job_effects (job_id, effect, status, result) values (${id}, 'smtp', 'done', ${JSON.stringify({ messageId: '<earlier@example.com>' })}::text::jsonb)`,
      )
      await services.tasks.submit('email.send', message('rerun@example.test'), { id })
      const record = await until(
        () =>
          hostRow(async (sql) => {
            const [r] = await sql<{ status: string; result: unknown }[]>`select status, result from sys_jobs where id = ${id}`
            return r?.status === 'completed' ? r : undefined
          }),
        15_000,
        'the re-run to complete',
      )
      expect(record.result).toEqual({ messageId: '<earlier@example.com>' })
      expect(smtp.messages).toHaveLength(0)
    } finally {
      await workers.close()
    }
  })
})
