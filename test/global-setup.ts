/**
 * Once per `npm test`: make sure Postgres and Redis answer, create the non-superuser app role the kit
 * connects as, and build a migrated host template database that each test file clones (tens of ms).
 */
import { migrationInfo, migrateHost } from '../src/core/db/migrations.js'
import { connect, withDatabase } from '../src/core/db/connect.js'
import { ADMIN_URL, APP_ROLE, APP_URL, REDIS_URL, SHARED_ROLE, hostTemplateName } from './helpers/env.js'
import { Redis } from 'ioredis'

export default async function setup() {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    await redis.ping()
  } catch (err) {
    throw new Error(`Redis is not reachable at ${REDIS_URL}: ${(err as Error).message}`)
  } finally {
    redis.disconnect()
  }

  const admin = connect(ADMIN_URL, { max: 1 })
  try {
    await admin`select 1`
    // The app never runs as a superuser: budget tests then meet the same limits as production.
    const [role] = await admin`select 1 from pg_roles where rolname = ${APP_ROLE}`
    if (!role) {
      await admin.unsafe(`create role ${APP_ROLE} login createdb password '${APP_ROLE}'`).catch((err) => {
        if (err.code !== '42710') throw err // created concurrently by another run
      })
    }
    // Shared isolation's data role: row-level security binds it (no BYPASSRLS, owns no table).
    const [shared] = await admin`select 1 from pg_roles where rolname = ${SHARED_ROLE}`
    if (!shared) {
      await admin.unsafe(`create role ${SHARED_ROLE} login nosuperuser nobypassrls password '${SHARED_ROLE}'`).catch((err) => {
        if (err.code !== '42710') throw err
      })
    }
    const template = hostTemplateName(migrationInfo('host').hash)
    const [exists] = await admin`select 1 from pg_database where datname = ${template}`
    if (!exists) {
      const building = `${template}_build_${process.pid}`
      await admin.unsafe(`create database ${building} owner ${APP_ROLE}`)
      await migrateHost(withDatabase(APP_URL, building))
      await admin.unsafe(`alter database ${building} rename to ${template}`).catch(async (err) => {
        await admin.unsafe(`drop database if exists ${building}`)
        if (err.code !== '42P04') throw err // another run built it first
      })
      await admin.unsafe(`alter database ${template} is_template true`)
    }
  } catch (err) {
    throw new Error(`Postgres setup failed at ${ADMIN_URL}: ${(err as Error).message}`)
  } finally {
    await admin.end()
  }
}
