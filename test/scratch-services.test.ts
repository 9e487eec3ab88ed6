/** The fault-test helpers themselves: a scratch Postgres and Redis start, stop and come back. */
import { afterAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { connect } from '../src/core/db/connect.js'
import { type ScratchPostgres, type ScratchRedis, startScratchPostgres, startScratchRedis } from './helpers/scratch-services.js'

describe('scratch services', () => {
  let pg: ScratchPostgres | undefined
  let redis: ScratchRedis | undefined
  afterAll(async () => {
    pg?.destroy()
    await redis?.destroy()
  })

  it('a Postgres cluster of its own: migrated host DB, stop refuses connections, start serves again', async () => {
    pg = await startScratchPostgres({ maxConnections: 20 })
    const hostUrl = await pg.createHostDatabase()
    const probe = async () => {
      const sql = connect(hostUrl, { max: 1 })
      try {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from core_users`
        return row!.n
      } finally {
        await sql.end({ timeout: 1 })
      }
    }
    expect(await probe()).toBe(0)
    pg.stop('immediate')
    await expect(probe()).rejects.toThrow()
    pg.start()
    expect(await probe()).toBe(0)
  })

  it('a Redis of its own: kill refuses connections, start serves again', async () => {
    redis = await startScratchRedis()
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(n * 50, 200) })
    client.on('error', () => {})
    try {
      expect(await client.set('k', 'v')).toBe('OK')
      await redis.kill()
      await expect(client.get('k')).rejects.toThrow()
      await redis.start()
      await expect.poll(() => client.ping().catch(() => 'down'), { timeout: 5000 }).toBe('PONG')
      expect(await client.get('k')).toBeNull() // no persistence: a restart loses everything
    } finally {
      client.disconnect()
    }
  })
})
