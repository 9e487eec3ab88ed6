/**
 * kill -9 of a worker in the middle of a batch of welcome emails: no owner gets two.
 *
 * The kill is aimed at the moment that used to duplicate mail: messages accepted by the SMTP server
 * whose jobs have not finished yet. The test pauses writes on its own Redis (CLIENT PAUSE … WRITE, a
 * scratch server: never the shared one), so every job that has sent and marked its effect done stays
 * stuck on BullMQ's move to completed (a job does not wait for its own record: processor.ts); once all
 * of the worker's slots are stuck like that, the worker is SIGKILLed. BullMQ's stalled check hands those
 * jobs to the next worker, which must not mail again.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { welcomeEmail } from '../../src/core/email/senders.js'
import { welcomeEmailJobId } from '../../src/features/tenants/welcome-email.js'
import { type ScratchRedis, startScratchRedis } from '../helpers/scratch-services.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { createJobsWorld, type JobsWorld, settled, until } from '../jobs/helpers.js'
import { killSpawnedWorkers, spawnWorker } from '../jobs/worker-child.js'

const CONCURRENCY = 4
const EMAILS = 24

let world: JobsWorld
let smtp: SmtpCapture
let redis: ScratchRedis

beforeAll(async () => {
  smtp = await startSmtpCapture()
  redis = await startScratchRedis()
  world = await createJobsWorld({
    REDIS_URL: redis.url,
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    SMTP_STARTTLS: 'false',
    JOB_RECONCILE_INTERVAL_MS: '0',
  })
})
afterEach(async () => {
  await killSpawnedWorkers()
})
afterAll(async () => {
  await world?.close()
  await smtp?.close()
  await redis?.destroy()
})

const workerArgs = [
  '--queues',
  'system',
  '--concurrency',
  String(CONCURRENCY),
  // Short locks: a killed worker's jobs are recovered in about two seconds.
  '--lock-duration-ms',
  '1000',
  '--stalled-interval-ms',
  '500',
]

describe('worker killed mid-batch', () => {
  it('SIGKILL while sent emails wait on BullMQ to complete their jobs: after recovery every owner has exactly one welcome email', async () => {
    const { tasks, host } = world.services
    const owners = Array.from({ length: EMAILS }, (_, i) => ({ tenantId: randomUUID(), to: `owner${i}@example.test` }))
    await tasks.submitMany(
      'email.send',
      owners.map((o) => welcomeEmail({ to: o.to, userName: 'Owner', tenantName: 'Acme', dashboardUrl: 'https://app.example.test/' })),
      { ids: owners.map((o) => welcomeEmailJobId(o.tenantId)) },
    )

    const first = spawnWorker(workerArgs, world.env.vars)
    await first.waitForLog('worker started')
    await smtp.waitFor(6, 20_000)

    // From here BullMQ takes no writes (reads still answer): every job that sends now stays stuck after its
    // send and its effect's "done" mark, on the move to completed.
    const active = tasks.queues.system.keys.active!
    await world.services.redis.call('client', 'pause', '60000', 'WRITE')
    try {
      const stuck = async () => {
        const ids = await world.services.redis.lrange(active, 0, -1)
        const [r] = await host.sql<{ n: number; done: number }[]>`
          select count(*) filter (where e.job_id = any(${`{${ids.join(',')}}`}::uuid[]))::int as n, count(*)::int as done
          from sys_job_effects e where e.status = 'done'`
        return r!
      }
      // Every slot of the worker holds a job that has sent its mail and can't finish.
      await until(async () => (await stuck()).n === CONCURRENCY, 20_000, `${CONCURRENCY} sent jobs stuck in BullMQ`)
      const before = await stuck()
      expect(smtp.messages).toHaveLength(before.done)
      expect(before.done).toBeLessThan(EMAILS)

      first.proc.kill('SIGKILL')
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    } finally {
      await world.services.redis.call('client', 'unpause')
    }

    const second = spawnWorker(workerArgs, world.env.vars)
    await second.waitForLog('worker started')
    for (const o of owners) {
      const view = await settled(tasks, welcomeEmailJobId(o.tenantId), 'system', 30_000)
      expect(view.status, second.output()).toBe('completed')
    }
    // The stuck jobs ran again on the second worker, found their mail sent, and did not send it again.
    const skipped = second.output().split('\n').filter((l) => l.includes('effect already done by an earlier run of this job'))
    expect(skipped).toHaveLength(CONCURRENCY)
    expect(smtp.messages).toHaveLength(EMAILS)
    expect(new Set(smtp.messages.map((m) => m.envelope.to[0])).size).toBe(EMAILS)
    const ids = new Set(owners.map((o) => `<${welcomeEmailJobId(o.tenantId)}@localhost>`))
    expect(smtp.messages.every((m) => ids.has(m.messageId!))).toBe(true)
  }, 240_000)
})
