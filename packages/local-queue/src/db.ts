import { createRequire } from 'node:module';
import type { DatabaseSync } from 'node:sqlite';

const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
  task_id TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  task_queue_id TEXT NOT NULL,
  scheduler_id TEXT NOT NULL,
  task_group_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  priority INTEGER NOT NULL,
  requires TEXT NOT NULL,
  retries INTEGER NOT NULL,
  retries_left INTEGER NOT NULL,
  deadline INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  runs TEXT NOT NULL,
  open INTEGER NOT NULL,
  taken_until INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_open_deadline ON tasks(deadline) WHERE open = 1;
CREATE INDEX IF NOT EXISTS tasks_taken_until ON tasks(taken_until) WHERE taken_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_group ON tasks(task_group_id);
CREATE INDEX IF NOT EXISTS tasks_expires ON tasks(expires);
CREATE TABLE IF NOT EXISTS pending (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_queue_id TEXT NOT NULL,
  priority INTEGER NOT NULL,
  task_id TEXT NOT NULL,
  run_id INTEGER NOT NULL,
  deadline INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_claim ON pending(task_queue_id, priority DESC, seq);
CREATE INDEX IF NOT EXISTS pending_task ON pending(task_id);
CREATE TABLE IF NOT EXISTS dependencies (
  required TEXT NOT NULL,
  dependent TEXT NOT NULL,
  satisfied INTEGER NOT NULL,
  PRIMARY KEY (required, dependent)
);
CREATE INDEX IF NOT EXISTS dependencies_dependent ON dependencies(dependent, satisfied);
CREATE TABLE IF NOT EXISTS artifacts (
  task_id TEXT NOT NULL,
  run_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  storage_type TEXT NOT NULL,
  content_type TEXT NOT NULL,
  expires INTEGER NOT NULL,
  present INTEGER NOT NULL,
  details TEXT NOT NULL,
  PRIMARY KEY (task_id, run_id, name)
);
CREATE INDEX IF NOT EXISTS artifacts_expires ON artifacts(expires);
CREATE TABLE IF NOT EXISTS objects (
  name TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  upload_id TEXT NOT NULL,
  expires INTEGER NOT NULL,
  content_type TEXT,
  content_length INTEGER,
  hashes TEXT NOT NULL,
  file TEXT,
  size INTEGER,
  finished INTEGER NOT NULL,
  data BLOB
);
CREATE INDEX IF NOT EXISTS objects_expires ON objects(expires);
CREATE TABLE IF NOT EXISTS workers (
  worker_pool_id TEXT NOT NULL,
  worker_group TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  static_secret TEXT NOT NULL,
  secret TEXT,
  expires INTEGER,
  state TEXT NOT NULL,
  worker_config TEXT NOT NULL,
  PRIMARY KEY (worker_pool_id, worker_group, worker_id)
);
CREATE TABLE IF NOT EXISTS task_groups (
  task_group_id TEXT PRIMARY KEY,
  scheduler_id TEXT NOT NULL,
  expires INTEGER NOT NULL,
  sealed INTEGER
);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, secret TEXT NOT NULL, expires INTEGER NOT NULL);
`;

export type Db = DatabaseSync;

/**
 * Opens (and creates) the state database in WAL mode. synchronous=FULL fsyncs every commit (a reply survives
 * power loss); NORMAL leaves the commit in the OS page cache (a reply survives SIGKILL of the process, not a crash
 * of the machine).
 */
export function openDatabase(file: string, synchronous: 'FULL' | 'NORMAL' = 'FULL'): Db {
  const require = createRequire(import.meta.url);
  const sqlite = require('node:sqlite') as typeof import('node:sqlite');
  const db = new sqlite.DatabaseSync(file);
  // One process owns the state: EXCLUSIVE (set before WAL mode) keeps the lock for the connection's life, so SQLite
  // skips the file locks and the shared-memory index it would take around every transaction, and a second queue on
  // the same state directory is refused instead of sharing it.
  db.exec('PRAGMA locking_mode = EXCLUSIVE');
  try {
    db.exec('PRAGMA journal_mode = WAL');
    db.exec(`PRAGMA synchronous = ${synchronous}`);
    db.exec('PRAGMA busy_timeout = 5000');
    db.exec('PRAGMA foreign_keys = OFF');
    db.exec(SCHEMA);
  } catch (error) {
    db.close();
    if (/locked|busy/i.test((error as Error).message)) {
      throw new Error(
        `the state database ${file} is in use by another local queue (one process owns a state directory): ` +
          'stop it, or give this one another state directory',
        { cause: error },
      );
    }
    throw error;
  }
  const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
    | { value: string }
    | undefined;
  if (!row) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
  } else if (Number(row.value) > SCHEMA_VERSION) {
    db.close();
    throw new Error(
      `state database ${file} has schema version ${row.value}; this @tcw/local-queue understands up to ${SCHEMA_VERSION}`,
    );
  } else if (Number(row.value) < 2) {
    // version 2: small (inline) object bytes live in the database instead of a file each
    transaction(db, () => {
      db.exec('ALTER TABLE objects ADD COLUMN data BLOB');
      db.prepare("UPDATE meta SET value = '2' WHERE key = 'schema_version'").run();
    });
  }
  return db;
}

/** Runs fn inside BEGIN IMMEDIATE … COMMIT (rolled back on throw). */
export function transaction<T>(db: Db, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}
