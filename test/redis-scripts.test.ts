/**
 * defineScript: a script defined while an auto-pipeline of the client is already open in the same tick
 * (what a lazily defined script meets under load) answers, and no orphaned pipeline callback is left to
 * crash the process later (ioredis: "results[i] is not iterable").
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { defineScript } from '../src/core/lib/redis.js'
import { REDIS_URL } from './helpers/env.js'

const client = new Redis(REDIS_URL, { enableAutoPipelining: true })
afterAll(() => client.quit())

describe('defineScript', () => {
  it('runs a script defined while an auto-pipeline is open, with the batched command beside it', async () => {
    await client.ping()
    const crashes: unknown[] = []
    const onCrash = (err: unknown) => crashes.push(err)
    process.on('uncaughtException', onCrash)
    try {
      const name = `tkTest${randomBytes(4).toString('hex')}`
      const key = `tk-test:${name}`
      const batched = client.get(`${key}:other`) // opens this tick's auto-pipeline
      defineScript(client, name, { numberOfKeys: 1, lua: "return redis.call('incr', KEYS[1])" })
      const scripted = (client as unknown as Record<string, (k: string) => Promise<number>>)[name]!(key)
      expect(await Promise.all([batched, scripted])).toEqual([null, 1])
      defineScript(client, name, { numberOfKeys: 1, lua: 'return 0' }) // a second definition is a no-op
      expect(await (client as unknown as Record<string, (k: string) => Promise<number>>)[name]!(key)).toBe(2)
      await client.del(key)
      await new Promise((resolve) => setImmediate(resolve))
      expect(crashes).toEqual([])
    } finally {
      process.off('uncaughtException', onCrash)
    }
  })
})
