/** Where the test suite finds Postgres and Redis, and how it names what it creates. */
import { randomBytes } from 'node:crypto'

export const ADMIN_URL = process.env.TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const APP_ROLE = 'tenantkit_app'
const admin = new URL(ADMIN_URL)
export const APP_URL = `postgres://${APP_ROLE}:${APP_ROLE}@${admin.host}/postgres`
/** The shared database's data role (shared isolation): a login with no BYPASSRLS, owning nothing. */
export const SHARED_ROLE = 'tenantkit_rls'
/** The shared database of one test world, reached as SHARED_ROLE. */
export const sharedUrl = (world: string) => `postgres://${SHARED_ROLE}:${SHARED_ROLE}@${admin.host}/${world}_shared`
/** createTestEnv({ ...SHARED }): the world gets a shared database (SHARED_DATABASE_URL = sharedUrl(world)). */
export const SHARED = { SHARED_DATABASE_URL: 'auto' } as const
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

export const hostTemplateName = (hash: string) => `tkt_host_tpl_${hash}`

/** A short unique name for one test file's resources: host DB, tenant DB prefix, Redis prefix. */
export const uniqueName = (label = 't') => `${label}${randomBytes(4).toString('hex')}`
