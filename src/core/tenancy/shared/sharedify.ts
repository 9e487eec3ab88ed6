/**
 * "Sharedify": turn a database migrated with migrations/tenant into the shared layout, mechanically, so
 * tenant migrations are written once for both layouts. Run after every migration run of the shared
 * database, it changes only what is not shared yet (idempotent):
 *   - every table gets `tenant_id uuid not null default nullif(current_setting('app.tenant_id', true), '')::uuid`,
 *     so rows are stamped by the database from the unit of work's setting, never by handler code
 *     (no setting → null → the insert fails);
 *   - unique constraints and every index lead with tenant_id (a unique email is unique per tenant; a
 *     tenant's queries use the index), and foreign keys include it (a row can only point at a row of its
 *     own tenant; the parent gets a unique (tenant_id, id) for that). Primary keys stay (id): ids are
 *     uuids, unique across tenants anyway, and `on conflict (id)` works the same in both layouts.
 *     Upserts on a natural key must not name it in ON CONFLICT (update, then insert … on conflict do
 *     nothing), since the shared layout's key has tenant_id in front;
 *   - row-level security enabled and FORCED with one policy, USING and WITH CHECK
 *     `tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid`: a forgotten setting sees no row;
 *   - the data role gets select/insert/update/delete, and must be neither the owner nor BYPASSRLS nor superuser.
 * Runs as the tables' owner, in one transaction.
 */
import type { Sql } from '../../db/connect.js'
import { TENANT_SETTING } from './scoped-client.js'

export const TENANT_COLUMN = 'tenant_id'
export const POLICY_NAME = 'tenant_isolation'
const CURRENT_TENANT = `nullif(current_setting('${TENANT_SETTING}', true), '')::uuid`
const SCHEMA = 'public'
/** Any constant; advisory locks are per database. */
const SHAREDIFY_LOCK = 7_401_002_027

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`

export interface SharedifyResult {
  tables: string[]
  /** What changed this run (empty when the database was already shared). */
  changes: string[]
}

/** Refuse a data role that could see every tenant's rows: superuser, BYPASSRLS, or owner of a tenant table. */
export async function assertDataRole(sql: Sql, role: string): Promise<void> {
  const [r] = await sql<{ rolsuper: boolean; rolbypassrls: boolean }[]>`select rolsuper, rolbypassrls from pg_roles where rolname = ${role}`
  if (!r) throw new Error(`the shared database's data role "${role}" does not exist; create it: create role ${role} login password '…' nosuperuser nobypassrls`)
  if (r.rolsuper || r.rolbypassrls) throw new Error(`the shared database's data role "${role}" is superuser or BYPASSRLS: row-level security would not apply to it`)
  const owned = await sql<{ t: string }[]>`
    select c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${SCHEMA} and c.relkind = 'r' and pg_get_userbyid(c.relowner) = ${role}`
  if (owned.length) throw new Error(`the shared database's data role "${role}" owns ${owned.map((o) => o.t).join(', ')}: an owner can turn row-level security off`)
}

const FK_ACTIONS: Record<string, string> = { a: 'no action', r: 'restrict', c: 'cascade', n: 'set null', d: 'set default' }

export async function sharedify(owner: Sql, dataRole: string): Promise<SharedifyResult> {
  const changes: string[] = []
  const tables: string[] = []
  await owner.begin(async (tx) => {
    const run = async (text: string) => {
      changes.push(text)
      await tx.unsafe(text)
    }
    await tx`select pg_advisory_xact_lock(${SHAREDIFY_LOCK})`
    const rows = await tx<{ t: string; has: boolean }[]>`
      select c.relname as t,
        exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = ${TENANT_COLUMN} and not a.attisdropped) as has
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${SCHEMA} and c.relkind in ('r', 'p') order by c.relname`
    for (const { t, has } of rows) {
      tables.push(t)
      if (!has) await run(`alter table ${ident(t)} add column ${TENANT_COLUMN} uuid not null default ${CURRENT_TENANT}`)
    }

    // Keys and foreign keys whose column list does not start with tenant_id.
    // Column lists come as comma-joined text: our pools fetch no array types (fetch_types off).
    const found = await tx<{ name: string; t: string; kind: string; cols: string; ref: string | null; refcols: string | null; del: string; upd: string }[]>`
      select con.conname as name, c.relname as t, con.contype as kind,
        array_to_string(array(select a.attname::text from unnest(con.conkey) with ordinality k(n, i) join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.i), ',') as cols,
        r.relname as ref,
        case when con.contype = 'f' then array_to_string(array(select a.attname::text from unnest(con.confkey) with ordinality k(n, i) join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n order by k.i), ',') end as refcols,
        con.confdeltype as del, con.confupdtype as upd
      from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
      left join pg_class r on r.oid = con.confrelid
      where n.nspname = ${SCHEMA} and con.contype in ('p', 'u', 'f')`
    const constraints = found.map((k) => ({ ...k, cols: k.cols.split(','), refcols: k.refcols?.split(',') ?? [] }))
    // Primary keys stay (id): ids are uuids, unique across tenants, and `on conflict (id)` keeps working.
    const unshared = constraints.filter((k) => k.kind !== 'p' && k.cols[0] !== TENANT_COLUMN)
    // Foreign keys first: a key they point at can only be rebuilt once they are gone.
    const fks = unshared.filter((k) => k.kind === 'f')
    for (const fk of fks) await run(`alter table ${ident(fk.t)} drop constraint ${ident(fk.name)}`)
    const keys = constraints.filter((k) => k.kind !== 'f').map((k) => ({ t: k.t, cols: k.cols }))
    for (const k of unshared.filter((k) => k.kind === 'u')) {
      await run(`alter table ${ident(k.t)} drop constraint ${ident(k.name)}`)
      const cols = [TENANT_COLUMN, ...k.cols]
      await run(`alter table ${ident(k.t)} add constraint ${ident(k.name)} unique (${cols.map(ident).join(', ')})`)
      keys.push({ t: k.t, cols })
    }
    for (const fk of fks) {
      // The referenced row must be of the same tenant: the foreign key includes tenant_id, so the parent needs a key on (tenant_id, …).
      const refcols = [TENANT_COLUMN, ...fk.refcols]
      if (!keys.some((k) => k.t === fk.ref && k.cols.join() === refcols.join())) {
        const name = `${fk.ref}_${refcols.join('_')}_key`.slice(0, 63)
        await run(`alter table ${ident(fk.ref!)} add constraint ${ident(name)} unique (${refcols.map(ident).join(', ')})`)
        keys.push({ t: fk.ref!, cols: refcols })
      }
      const cols = [TENANT_COLUMN, ...fk.cols].map(ident).join(', ')
      // set null / set default touch only the referencing columns: tenant_id stays.
      const only = (code: string) => (code === 'n' || code === 'd' ? ` (${fk.cols.map(ident).join(', ')})` : '')
      await run(
        `alter table ${ident(fk.t)} add constraint ${ident(fk.name)} foreign key (${cols}) references ${ident(fk.ref!)} (${refcols.map(ident).join(', ')}) on delete ${FK_ACTIONS[fk.del]}${only(fk.del)} on update ${FK_ACTIONS[fk.upd]}`,
      )
    }

    // Indexes not backing a constraint (drizzle's index()/uniqueIndex()): recreated with tenant_id first.
    const indexes = await tx<{ name: string; def: string }[]>`
      select i.relname as name, pg_get_indexdef(x.indexrelid) as def
      from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${SCHEMA} and not exists (select 1 from pg_constraint con where con.conindid = x.indexrelid)
        and (x.indkey[0] = 0 or (select a.attname from pg_attribute a where a.attrelid = x.indrelid and a.attnum = x.indkey[0]) <> ${TENANT_COLUMN})`
    for (const { name, def } of indexes) {
      const rewritten = def.replace(/ USING (\w+) \(/, ` USING $1 (${TENANT_COLUMN}, `)
      if (rewritten === def) throw new Error(`sharedify: cannot put ${TENANT_COLUMN} first in index ${name}: ${def}`)
      await run(`drop index ${ident(name)}`)
      await run(rewritten)
    }

    const policies = await tx<{ t: string }[]>`select tablename as t from pg_policies where schemaname = ${SCHEMA} and policyname = ${POLICY_NAME}`
    const secured = await tx<{ t: string; on: boolean; forced: boolean }[]>`
      select c.relname as t, c.relrowsecurity as on, c.relforcerowsecurity as forced
      from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = ${SCHEMA} and c.relkind in ('r', 'p')`
    for (const t of tables) {
      const s = secured.find((x) => x.t === t)
      if (!s?.on) await run(`alter table ${ident(t)} enable row level security`)
      if (!s?.forced) await run(`alter table ${ident(t)} force row level security`)
      if (!policies.some((p) => p.t === t)) {
        const mine = `${TENANT_COLUMN} = ${CURRENT_TENANT}`
        await run(`create policy ${POLICY_NAME} on ${ident(t)} using (${mine}) with check (${mine})`)
      }
    }
    // Grants are cheap and idempotent: always (a new table needs them; an existing one is unchanged).
    await tx.unsafe(`grant usage on schema ${SCHEMA} to ${ident(dataRole)}`)
    if (tables.length) await tx.unsafe(`grant select, insert, update, delete on ${tables.map(ident).join(', ')} to ${ident(dataRole)}`)
    await assertDataRole(tx as unknown as Sql, dataRole)
  })
  return { tables, changes }
}

/** The shared layout's tenant tables: those sharedify gave a tenant_id (all of public's tables). */
export async function sharedTables(sql: Sql): Promise<string[]> {
  const rows = await sql<{ t: string }[]>`
    select c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${SCHEMA} and c.relkind in ('r', 'p')
      and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = ${TENANT_COLUMN} and not a.attisdropped)
    order by c.relname`
  return rows.map((r) => r.t)
}
