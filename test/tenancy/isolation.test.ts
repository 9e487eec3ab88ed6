/** The isolation suite (isolation-suite.ts) with every tenant in a database of its own. */
import { isolationSuite } from './isolation-suite.js'

isolationSuite('database')
