/**
 * Ownership is never given, only taken up: an owner offers it to an admin of the tenant, who becomes
 * an owner by accepting (the offerer stays owner; they may step down afterwards). An offer is open
 * until accepted, canceled (by an owner) or declined (by its recipient, also recorded as canceled),
 * and lapses after OFFER_TTL_DAYS. Acceptance re-checks, in the same transaction that makes the
 * owner, that the recipient is still an admin and the offerer still an owner.
 */
import { and, asc, eq, gt, isNull, sql } from 'drizzle-orm'
import { memberships, type OwnershipOffer, ownershipOffers } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import { AppError, conflict, notFound, PG, pgCode } from '../../core/lib/errors.js'

export const OFFER_TTL_DAYS = 7

export type OfferState = 'open' | 'expired' | 'accepted' | 'canceled'

export const offerState = (o: OwnershipOffer, now = Date.now()): OfferState =>
  o.acceptedAt ? 'accepted' : o.canceledAt ? 'canceled' : o.expiresAt.getTime() <= now ? 'expired' : 'open'

export const toOfferView = (o: OwnershipOffer) => ({
  id: o.id,
  userId: o.userId,
  offeredBy: o.offeredBy,
  state: offerState(o),
  expiresAt: o.expiresAt.toISOString(),
  createdAt: o.createdAt.toISOString(),
})

export const OFFER_ERRORS = {
  notFound: () => notFound('OFFER_NOT_FOUND', 'No such ownership offer in this tenant'),
  expired: () => new AppError(410, 'OFFER_EXPIRED', 'This ownership offer has expired'),
  canceled: () => new AppError(410, 'OFFER_CANCELED', 'This ownership offer was canceled or declined'),
  used: () => conflict('OFFER_USED', 'This ownership offer was already accepted'),
  stale: () => conflict('OFFER_STALE', 'The offer no longer holds: its recipient is no longer an admin, or its author no longer an owner'),
}

function throwForState(o: OwnershipOffer) {
  const state = offerState(o)
  if (state === 'accepted') throw OFFER_ERRORS.used()
  if (state === 'canceled') throw OFFER_ERRORS.canceled()
  if (state === 'expired') throw OFFER_ERRORS.expired()
}

const open = and(isNull(ownershipOffers.acceptedAt), isNull(ownershipOffers.canceledAt))

export function createOwnershipOffers(db: HostDb, tenantId: string) {
  async function find(id: string): Promise<OwnershipOffer | undefined> {
    const [row] = await db
      .select()
      .from(ownershipOffers)
      .where(and(eq(ownershipOffers.id, id), eq(ownershipOffers.tenantId, tenantId)))
    return row
  }

  return {
    find,

    /** 409 OFFER_PENDING when the member already has an open offer (expired ones included: cancel it first). */
    async create(userId: string, offeredBy: string): Promise<OwnershipOffer> {
      try {
        const [row] = await db
          .insert(ownershipOffers)
          .values({ tenantId, userId, offeredBy, expiresAt: sql`now() + make_interval(days => ${OFFER_TTL_DAYS})` })
          .returning()
        return row!
      } catch (err) {
        if (pgCode(err) === PG.uniqueViolation) throw conflict('OFFER_PENDING', 'This member already has an open ownership offer')
        throw err
      }
    },

    /** Open offers (expired ones too, until canceled), oldest first. */
    async listOpen(): Promise<OwnershipOffer[]> {
      return db
        .select()
        .from(ownershipOffers)
        .where(and(eq(ownershipOffers.tenantId, tenantId), open))
        .orderBy(asc(ownershipOffers.id))
    },

    /** Cancel (or decline) an open offer; 404 / 409 OFFER_USED / 410 OFFER_CANCELED otherwise. */
    async cancel(id: string, by: string): Promise<OwnershipOffer> {
      const [row] = await db
        .update(ownershipOffers)
        .set({ canceledAt: sql`now()`, canceledBy: by })
        .where(and(eq(ownershipOffers.id, id), eq(ownershipOffers.tenantId, tenantId), open))
        .returning()
      if (row) return row
      const existing = await find(id)
      if (!existing) throw OFFER_ERRORS.notFound()
      throwForState(existing)
      throw OFFER_ERRORS.notFound()
    },

    /**
     * The recipient accepts: in one transaction, claim the open offer and make its recipient an owner,
     * provided they are still an active admin and its author still an owner (409 OFFER_STALE).
     */
    async accept(offer: OwnershipOffer): Promise<void> {
      await db.transaction(async (tx) => {
        const [claimed] = await tx
          .update(ownershipOffers)
          .set({ acceptedAt: sql`now()` })
          .where(and(eq(ownershipOffers.id, offer.id), open, gt(ownershipOffers.expiresAt, sql`now()`)))
          .returning()
        if (!claimed) {
          const [now] = await tx.select().from(ownershipOffers).where(eq(ownershipOffers.id, offer.id))
          if (!now) throw OFFER_ERRORS.notFound()
          throwForState(now)
          throw OFFER_ERRORS.notFound()
        }
        const author = claimed.offeredBy
          ? await tx
              .select({ role: memberships.role })
              .from(memberships)
              .where(and(eq(memberships.tenantId, tenantId), eq(memberships.userId, claimed.offeredBy), eq(memberships.status, 'active')))
          : []
        if (author[0]?.role !== 'owner') throw OFFER_ERRORS.stale()
        const promoted = await tx
          .update(memberships)
          .set({ role: 'owner' })
          .where(
            and(
              eq(memberships.tenantId, tenantId),
              eq(memberships.userId, claimed.userId),
              eq(memberships.role, 'admin'),
              eq(memberships.status, 'active'),
            ),
          )
          .returning({ id: memberships.id })
        if (promoted.length === 0) throw OFFER_ERRORS.stale()
      })
    },

    throwForState,
  }
}
