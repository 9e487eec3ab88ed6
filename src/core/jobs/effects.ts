/**
 * Side effects done once per job id (`ctx.once(effect, run)`), for effects outside our databases that a
 * re-run would repeat: an SMTP send. BullMQ runs a job at least once (a retry after a failure, a stalled
 * job after a worker died), so the job remembers what it did in the host DB's sys_job_effects:
 *
 *   1. upsert (job id, effect) as 'started'          the host DB is down → the attempt fails before the effect
 *   2. run the effect
 *   3. mark it 'done' with its result                  the host DB is down → retried in the background; the job
 *                                                      completes, so BullMQ never runs it again
 *
 * A re-run that finds 'done' skips the effect and returns the recorded result. One window is left: a
 * process killed between the effect and step 3 (an SMTP server's "250 OK" and one host DB commit: a few
 * milliseconds, more on a starved CPU; bench:faults' kill -9 hit it in 2 of 7 runs at load 6–8) leaves
 * 'started', and the re-run repeats the effect once. That is SMTP's own limit (RFC
 * 5321 §6.1: a lost reply means a duplicate); email.send gives such a repeat the same Message-ID, which
 * lets receiving systems fold it. Skipping on 'started' instead would lose mail sent never.
 */
import type { Logger } from 'pino'
import type { Sql } from '../db/connect.js'
import type { BackgroundWrites } from './background-writes.js'

export interface Effects {
  once<T>(jobId: string, effect: string, run: () => Promise<T>, logger: Logger): Promise<T>
}

export function createEffects(hostSql: Sql, writes: BackgroundWrites): Effects {
  return {
    async once(jobId, effect, run, logger) {
      const [row] = await hostSql<{ status: string; attempts: number; result: unknown }[]>`
        insert into sys_job_effects (job_id, effect) values (${jobId}, ${effect})
        on conflict (job_id, effect) do update
          set attempts = sys_job_effects.attempts + case when sys_job_effects.status = 'done' then 0 else 1 end, updated_at = now()
        returning status, attempts, result`
      if (row!.status === 'done') {
        logger.info({ effect }, 'effect already done by an earlier run of this job; not repeated')
        return row!.result as never
      }
      // attempts > 1: an earlier run started it and may have done it (crash window above); logged so a
      // rare duplicate can be traced.
      if (row!.attempts > 1)
        logger.warn({ effect, attempts: row!.attempts }, 'effect started by an earlier run and not marked done; running it again')
      const result = await run()
      // Sent as text and cast: a string parameter typed jsonb would be JSON-encoded a second time.
      const json = JSON.stringify(result ?? null)
      await writes.attempt(
        `effect ${effect} done`,
        () => hostSql`
          update sys_job_effects set status = 'done', result = ${json}::text::jsonb, updated_at = now()
          where job_id = ${jobId} and effect = ${effect}`,
        { jobId, effect },
      )
      return result
    },
  }
}
