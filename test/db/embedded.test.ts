/**
 * The embedded Postgres behind `npm run dev` (no DATABASE_URL): first start initialises a data folder,
 * the app gets a non-superuser role that can create databases, the host migrations apply, a restart
 * reuses the data, and a taken port fails with Postgres' own reason. It runs its own throwaway cluster
 * in a temp folder on a free port, so it needs neither createTestEnv() nor the shared server (~3 s).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect } from '../../src/core/db/connect.js'
import { type EmbeddedLogger, startEmbeddedPostgres } from '../../src/core/db/embedded.js'
import { migrateHost } from '../../src/core/db/migrations.js'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

function recordingLogger(): EmbeddedLogger & { lines: string[] } {
  const lines: string[] = []
  return { lines, info: (m) => lines.push(m), warn: (m) => lines.push(m) }
}

let base: string
let dir: string

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'tk-embedded-'))
  // mkdtemp makes it 0700; as root the server runs as OS user `postgres`, which must traverse it.
  await chmod(base, 0o755)
  dir = join(base, '.data', 'postgres') // like the default: a parent folder that does not exist yet
})

afterAll(async () => {
  await rm(base, { recursive: true, force: true })
})

describe('startEmbeddedPostgres', () => {
  it('initialises once, serves a non-superuser app role and database, and reuses the data on restart', async () => {
    const port = await freePort()
    const first = recordingLogger()
    const pg = await startEmbeddedPostgres(first, { dir, port })
    try {
      expect(pg.url).toBe(`postgres://tenantkit:tenantkit@127.0.0.1:${port}/tenantkit`)
      expect(first.lines.some((l) => l.includes('first run'))).toBe(true)
      const sql = connect(pg.url, { max: 1 })
      try {
        const [me] = await sql`select current_user as "user", current_database() as db, rolsuper, rolcreatedb
                               from pg_roles where rolname = current_user`
        expect(me).toEqual({ user: 'tenantkit', db: 'tenantkit', rolsuper: false, rolcreatedb: true })
      } finally {
        await sql.end()
      }
      // `npm run dev` migrates the host database at boot: the migrations must apply on this server too.
      await migrateHost(pg.url)
    } finally {
      await pg.stop()
    }

    const second = recordingLogger()
    const again = await startEmbeddedPostgres(second, { dir, port })
    try {
      expect(second.lines.some((l) => l.includes('first run'))).toBe(false)
      const sql = connect(again.url, { max: 1 })
      try {
        const [table] = await sql`select to_regclass('public.core_tenants')::text as name`
        expect(table?.name).toBe('core_tenants')
      } finally {
        await sql.end()
      }
    } finally {
      await again.stop()
    }
  })

  it('fails with the reason when its port is taken', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const { port } = blocker.address() as { port: number }
    try {
      await expect(startEmbeddedPostgres(recordingLogger(), { dir, port })).rejects.toThrow(
        /could not start on 127\.0\.0\.1:\d+[\s\S]*could not/,
      )
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
    }
  })
})
