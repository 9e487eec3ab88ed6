import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'postgresql',
  schema: './drizzle/tenant/schema.ts',
  out: './migrations/tenant',
})
