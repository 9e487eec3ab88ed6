/**
 * Waiting for state, not for the clock: a busy machine (other test files, other workers) makes any
 * fixed sleep too short sometimes. waitFor re-evaluates a check until it holds, with a deadline generous
 * enough for a loaded machine, and says what it was waiting for (and what it last saw) when it gives up.
 */
import { setTimeout as sleep } from 'node:timers/promises'

export interface WaitForOptions {
  /** Give up after this long (ms). Default 15 s: well past a loaded machine, well under the 30 s test timeout. */
  timeout?: number
  /** Pause between checks (ms). Default 25. */
  interval?: number
  /** What is being waited for, for the failure message. */
  message?: string
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/**
 * Resolves with the first truthy value `check` returns. A check that throws (an `expect` not met yet, a
 * row not there yet) counts as not yet; on timeout the error names `message` and the last value or error.
 * Assertion-style checks return true at their end: `waitFor(() => { expect(x).toBe(1); return true })`.
 */
export async function waitFor<T>(check: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<Truthy<T>> {
  const { timeout = 15_000, interval = 25, message = 'condition' } = opts
  const deadline = Date.now() + timeout
  for (;;) {
    let last: string
    try {
      const value = await check()
      if (value) return value as Truthy<T>
      last = `last value: ${describe(value)}`
    } catch (err) {
      last = `last error: ${err instanceof Error ? err.message : String(err)}`
    }
    if (Date.now() >= deadline) throw new Error(`waitFor: ${message} not met within ${timeout} ms (${last})`)
    await sleep(interval)
  }
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
