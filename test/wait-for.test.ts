/** The suite's polling helper: what it returns, what it retries, and what it says when it gives up. */
import { describe, expect, it } from 'vitest'
import { waitFor } from './helpers/wait-for.js'

describe('waitFor', () => {
  it('returns the first truthy value, counting falsy values and throws as not yet', async () => {
    let calls = 0
    const value = await waitFor(() => {
      calls++
      if (calls === 1) throw new Error('not there yet')
      return calls >= 3 ? { calls } : undefined
    }, { interval: 1 })
    expect(value).toEqual({ calls: 3 })
  })

  it('gives up after its timeout, naming what it waited for and the last value or error seen', async () => {
    await expect(waitFor(() => 0, { timeout: 50, interval: 5, message: 'the count to grow' })).rejects.toThrow(
      'waitFor: the count to grow not met within 50 ms (last value: 0)',
    )
    await expect(
      waitFor(
        () => {
          throw new Error('row missing')
        },
        { timeout: 50, interval: 5 },
      ),
    ).rejects.toThrow('waitFor: condition not met within 50 ms (last error: row missing)')
  })
})
