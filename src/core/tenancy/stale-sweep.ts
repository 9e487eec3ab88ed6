/**
 * The stale provisioning sweep: a tenant left 'provisioning' with nothing to finish it (its process died,
 * or the database was down when the run tried to mark it failed, so no retry is coming) is resumed from
 * its recorded step through the provisioner's retry path. The worker runs it at start and then every
 * PROVISION_SWEEP_INTERVAL_S; `tenants resume-stale` runs it once.
 *
 * One sweeper at a time across processes: resumeStale() holds a session advisory lock for the sweep
 * (another process' sweep just skips its turn), and each tenant's own lock keeps a sweep off a tenant
 * that a job or a CLI run is working on. Sweeps of one process never overlap (the next is scheduled
 * when the previous has finished).
 */
import type { Logger } from 'pino'
import { errorMessage } from '../lib/error-log.js'
import type { Provisioner, StaleSweepResult } from './provisioning.js'

export interface StaleSweeper {
  /** One sweep now (waits for one already running in this process first). */
  runOnce(): Promise<StaleSweepResult | 'busy' | undefined>
  /** No further sweeps; resolves when a running one has finished the tenant in hand. */
  stop(): Promise<void>
}

export function startStaleSweep(deps: { provisioner: Pick<Provisioner, 'resumeStale'>; intervalMs: number; logger: Logger }): StaleSweeper {
  const { provisioner, intervalMs, logger } = deps
  let timer: NodeJS.Timeout | undefined
  let running: Promise<StaleSweepResult | 'busy' | undefined> | undefined
  const stopping = new AbortController()

  async function sweep(): Promise<StaleSweepResult | 'busy' | undefined> {
    if (stopping.signal.aborted) return undefined
    try {
      const result = await provisioner.resumeStale({ signal: stopping.signal })
      if (result !== 'busy' && result.resumed.length + result.failed.length + result.busy.length > 0) {
        logger.info(
          { resumed: result.resumed, failed: result.failed.map((f) => f.slug), busy: result.busy },
          'stale provisioning sweep finished',
        )
      }
      return result
    } catch (err) {
      // The database may still be down: the next turn tries again.
      logger.warn({ err: errorMessage(err) }, 'stale provisioning sweep failed')
      return undefined
    }
  }

  function runOnce() {
    const previous = running ?? Promise.resolve(undefined)
    const next = previous.then(sweep)
    running = next
    void next.finally(() => {
      if (running === next) running = undefined
    })
    return next
  }

  function schedule() {
    if (stopping.signal.aborted) return
    timer = setTimeout(() => {
      void runOnce().finally(schedule)
    }, intervalMs)
    timer.unref()
  }

  void runOnce().finally(schedule)

  return {
    runOnce,
    async stop() {
      stopping.abort()
      clearTimeout(timer)
      await running
    },
  }
}
