/**
 * The example resource's repository: copy this folder (routes.ts, schemas.ts, feature.ts) and its
 * test, test/api/projects.test.ts, for your own tables. It receives the tenant database from the request, so it can't reach another
 * tenant's data; reads on the hot path are prepared statements.
 */
import { and, desc, eq, lt, sql } from 'drizzle-orm'
import { type Project, projects } from '../../../drizzle/tenant/schema.js'
import { lean, preparedFor } from '../../core/tenancy/prepared.js'
import type { TenantDb } from '../../core/tenancy/types.js'

const statements = preparedFor((db) => ({
  // lean(): the hot read runs straight on the handle's client (same SQL, rows and errors; see prepared.ts).
  byId: lean(
    db
      .select()
      .from(projects)
      .where(eq(projects.id, sql.placeholder('id')))
      .prepare('projects_by_id'),
  ),
}))

export interface ProjectPage {
  items: Project[]
  nextCursor: string | null
}

/**
 * The repository of one database handle, built once per handle (like its prepared statements) rather
 * than once per request: it holds nothing but the handle.
 */
export const createProjectsRepository = preparedFor(projectsRepository)

function projectsRepository(db: TenantDb) {
  return {
    findById: async (id: string) => (await statements(db).byId.execute({ id }))[0],

    /** Newest first. Ids are UUIDv7 (time-ordered), so the last id of a page is the cursor. */
    async list({ limit, cursor, status }: { limit: number; cursor?: string | undefined; status?: Project['status'] | undefined }): Promise<ProjectPage> {
      const rows = await db
        .select()
        .from(projects)
        .where(and(cursor ? lt(projects.id, cursor) : undefined, status ? eq(projects.status, status) : undefined))
        .orderBy(desc(projects.id))
        .limit(limit + 1)
      const items = rows.slice(0, limit)
      return { items, nextCursor: rows.length > limit ? items.at(-1)!.id : null }
    },

    /** How many projects the tenant has (its plan's `projects` limit counts these). */
    async count() {
      const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(projects)
      return row!.n
    },

    async create(values: { name: string; description?: string | null | undefined; createdBy: string }) {
      const [row] = await db.insert(projects).values(values).returning()
      return row!
    },

    async update(id: string, patch: Partial<Pick<Project, 'name' | 'description' | 'status'>>) {
      const [row] = await db.update(projects).set(patch).where(eq(projects.id, id)).returning()
      return row
    },

    async remove(id: string) {
      const rows = await db.delete(projects).where(eq(projects.id, id)).returning({ id: projects.id })
      return rows.length > 0
    },
  }
}
