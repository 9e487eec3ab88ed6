/**
 * Writes that must land but must not fail the job that asked for them: a job's own record once its
 * work is done, the "effect done" mark of an email already sent. Failing the job over them would run
 * the work again (one welcome email went out five times while Postgres was down), so such a write is
 * tried at once and, if it throws, retried in the background with capped exponential backoff.
 *
 * In memory only: if the process dies first, the reconcile sweep (reconcile.ts) brings job records
 * in line with BullMQ's state, and an effect left "started" makes at most one repeat (effects.ts).
 */
import type { Logger } from 'pino'

export interface BackgroundWrites {
  /**
   * Try `write` now; if it throws, keep retrying it in the background. Resolves (never rejects) once the
   * first try settled: true if it landed, false if it was left to the background.
   */
  attempt(what: string, write: () => Promise<unknown>, fields?: Record<string, unknown>): Promise<boolean>
  /** Writes still being retried. */
  pending(): number
  /** Stop retrying (process shutdown); returns how many writes were given up. */
  close(): number
}

export interface BackgroundWritesOptions {
  logger: Logger
  /** First retry delay (default 500 ms), doubling per try up to maxDelayMs (default 30 s). */
  baseDelayMs?: number
  maxDelayMs?: number
  /** Give up after this long (default 15 min); the reconcile sweep repairs what is left. */
  giveUpAfterMs?: number
}

export function createBackgroundWrites(o: BackgroundWritesOptions): BackgroundWrites {
  const base = o.baseDelayMs ?? 500
  const cap = o.maxDelayMs ?? 30_000
  const giveUpAfter = o.giveUpAfterMs ?? 15 * 60_000
  const timers = new Set<NodeJS.Timeout>()
  let running = 0
  let closed = false

  function retry(what: string, write: () => Promise<unknown>, fields: Record<string, unknown>, since: number, tries: number) {
    if (closed) return
    const delay = Math.min(base * 2 ** Math.min(tries - 1, 16), cap) * (0.75 + Math.random() * 0.5)
    const timer = setTimeout(async () => {
      timers.delete(timer)
      running++
      try {
        await write()
        o.logger.info({ ...fields, what, tries: tries + 1 }, 'deferred write landed')
      } catch (err) {
        if (Date.now() - since > giveUpAfter) {
          o.logger.error({ ...fields, err, what, tries: tries + 1 }, 'deferred write given up; the reconcile sweep will repair it')
          return
        }
        retry(what, write, fields, since, tries + 1)
      } finally {
        running--
      }
    }, delay)
    // Never what keeps a process alive: the reconcile sweep covers a write lost at exit.
    timer.unref()
    timers.add(timer)
  }

  return {
    async attempt(what, write, fields = {}) {
      try {
        await write()
        return true
      } catch (err) {
        o.logger.warn({ ...fields, err, what }, 'write failed; retrying it in the background (the job itself is not failed for it)')
        retry(what, write, fields, Date.now(), 1)
        return false
      }
    },
    pending: () => timers.size + running,
    close() {
      closed = true
      const left = timers.size
      for (const t of timers) clearTimeout(t)
      timers.clear()
      if (left > 0) o.logger.warn({ left }, 'deferred writes given up at shutdown; the reconcile sweep will repair them')
      return left
    },
  }
}
