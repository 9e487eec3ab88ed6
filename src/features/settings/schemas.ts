import { Type } from 'typebox'

/** Flag and preference names: short identifiers, so they can't smuggle markup or paths into a UI (checked by the routes). */
export const KEY = /^[a-z][a-z0-9_.-]{0,63}$/
const Key = Type.String({ description: `matches ${KEY.source}` })

export const SettingsSchema = Type.Object({
  timezone: Type.String({ description: 'IANA time zone, e.g. Europe/Paris' }),
  currency: Type.String({ description: 'ISO 4217 code, lowercase (as Stripe writes it), e.g. usd' }),
  featureFlags: Type.Record(Key, Type.Boolean()),
  updatedAt: Type.String({ format: 'date-time' }),
})

export const UpdateSettingsBody = Type.Object(
  {
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    currency: Type.Optional(Type.String({ pattern: '^[A-Za-z]{3}$' })),
    // Merged into the current flags; null removes one.
    featureFlags: Type.Optional(Type.Record(Key, Type.Union([Type.Null(), Type.Boolean()]), { maxProperties: 100 })),
  },
  { additionalProperties: false, minProperties: 1 },
)

const PreferenceValue = Type.Union([Type.Null(), Type.Boolean(), Type.Number(), Type.String({ maxLength: 1000 })])

export const PreferencesSchema = Type.Object({
  preferences: Type.Record(Key, Type.Union([Type.Boolean(), Type.Number(), Type.String()])),
})

export const UpdatePreferencesBody = Type.Object(
  {
    // Merged into the current preferences; null removes one.
    preferences: Type.Record(Key, PreferenceValue, { minProperties: 1, maxProperties: 50 }),
  },
  { additionalProperties: false },
)
