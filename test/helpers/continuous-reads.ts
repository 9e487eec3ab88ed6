import type { LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'

export interface ReadTally {
  reads: number
  failed: number
  /** Answers by status code (for a failure message). */
  statuses: Record<number, number>
}

/**
 * Readers that keep issuing `read` (each every `everyMs`) until stopped, every 200 answer checked equal to
 * `expected`'s body: what a tenant's users see while it moves. `stop()` ends them and counts the answers.
 */
export function continuousReads(
  read: () => Promise<LightMyRequestResponse>,
  expected: LightMyRequestResponse,
  { readers = 2, everyMs = 50 } = {},
): { stop(): Promise<ReadTally> } {
  let stopped = false
  const statuses = new Map<number, number>()
  const running = Array.from({ length: readers }, async () => {
    while (!stopped) {
      const res = await read()
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode === 200) expect(res.json()).toEqual(expected.json())
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(running)
      const reads = [...statuses.values()].reduce((a, b) => a + b, 0)
      return { reads, failed: reads - (statuses.get(200) ?? 0), statuses: Object.fromEntries(statuses) }
    },
  }
}
