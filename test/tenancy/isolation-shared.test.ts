/** The isolation suite (isolation-suite.ts) with every tenant in the shared database, under row-level security. */
import { isolationSuite } from './isolation-suite.js'

isolationSuite('shared')
