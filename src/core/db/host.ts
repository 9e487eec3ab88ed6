/** The host database handle: one postgres.js pool and a drizzle instance over the host schema. */
import { createTableRelationsHelpers, type ExtractTablesWithRelations, extractTablesRelationalConfig } from 'drizzle-orm'
import { drizzle, PostgresJsDatabase, PostgresJsSession } from 'drizzle-orm/postgres-js'
import { PgDialect } from 'drizzle-orm/pg-core'
import type postgres from 'postgres'
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

/** A postgres.js client or transaction: what code that opened its own `sql.begin` holds. */
export type RawSql = postgres.Sql | postgres.TransactionSql

const dialect = new PgDialect()
const relational = extractTablesRelationalConfig(schema, createTableRelationsHelpers)
const schemaConfig = {
  fullSchema: schema,
  schema: relational.tables as ExtractTablesWithRelations<HostSchema>,
  tableNamesMap: relational.tableNamesMap,
}

/**
 * Drizzle over a postgres.js transaction someone else opened (the Stripe webhook's `sql.begin`): its
 * queries run on that transaction's connection, so they commit or roll back with it. drizzle() can't
 * wrap a transaction (it sets parsers on `client.options`, which only the pool has); the pool's are
 * already set by createHostDatabase, and drizzle's own mapping reads a Date or text alike.
 */
export function hostDbOn(client: RawSql): HostDb {
  const session = new PostgresJsSession(client as postgres.Sql, dialect, schemaConfig, {})
  return new PostgresJsDatabase(dialect, session, schemaConfig) as HostDb
}

export { schema as hostSchema }
