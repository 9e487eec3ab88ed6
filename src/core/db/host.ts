/** The host database handle: one postgres.js pool and a drizzle instance over the host schema. */
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import * as schema from '../../../drizzle/host/schema.js'
import { type ConnectOptions, connect, type Sql } from './connect.js'

export type HostSchema = typeof schema
export type HostDb = PostgresJsDatabase<HostSchema>

export interface HostDatabase {
  sql: Sql
  db: HostDb
  close(): Promise<void>
}

export function createHostDatabase(url: string, max = 10, opts: Pick<ConnectOptions, 'connectTimeoutMs' | 'statementTimeoutMs'> = {}): HostDatabase {
  const sql = connect(url, { ...opts, max, applicationName: 'tenantkit-host' })
  const db = drizzle(sql, { schema })
  return { sql, db, close: () => sql.end({ timeout: 5 }) }
}

export { schema as hostSchema }
