/** Slug rules shared by provisioning and the routes. */
import { randomBytes } from 'node:crypto'

/** A personal tenant's slug from an email: "ada.lovelace@x.com" → "ada-lovelace-3f9a". */
export function personalTenantSlug(email: string): string {
  const base = (email.split('@')[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
  return `${base.length >= 2 ? base : 'team'}-${randomBytes(2).toString('hex')}`
}
