/** Consistent backup and restore (docs/backup.md). */
export { type BackupOptions, takeBackup } from './backup.js';
export {
  BACKUP_FORMAT,
  BACKUP_VERSION,
  type BackupManifest,
  type BackupShard,
  imageFileOf,
  MANIFEST_FILE,
  parseManifest,
  readManifest,
} from './format.js';
export { type RestoredShard, type RestoreOptions, type RestoreResult, restoreNode } from './restore.js';
export { addBackupService, type BackupHost, type BackupServiceOptions, serveBackup } from './service.js';
